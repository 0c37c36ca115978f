"""The audit event: append-only, each row chained to the previous one by SHA-256."""

from __future__ import annotations

from typing import Any

from django.db import models


class AppendOnlyError(Exception):
    """Raised when code tries to change or delete an audit event."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        """Refuse: audit events are never changed."""
        raise AppendOnlyError("audit events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        """Refuse: events leave the table only through the retention archive."""
        raise AppendOnlyError("audit events are append-only")


class AuditEvent(models.Model):
    """One thing that happened. Actor and object are copied values, never foreign keys."""

    class Outcome(models.TextChoices):
        SUCCESS = "success"
        FAILURE = "failure"
        INFO = "info"

    created_at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=150, blank=True, db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True, db_index=True)
    protocol = models.CharField(max_length=20, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=500, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor or '-'} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert once; refuse any later save of the same row."""
        if self.pk is not None:
            raise AppendOnlyError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        """Refuse: events leave the table only through the retention archive."""
        raise AppendOnlyError("audit events are append-only")


class ChainHead(models.Model):
    """The chain's last event, updated with every append: deleting the newest events
    (which leaves no broken link behind) is caught by comparing the walk with this row."""

    last_id = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)
    count = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"head {self.last_id} ({self.count} events)"


class ArchiveRecord(models.Model):
    """A retention archive: events up to `through_id` left the table into a signed file."""

    created_at = models.DateTimeField(auto_now_add=True)
    through_id = models.BigIntegerField()
    last_hash = models.CharField(max_length=64)
    count = models.BigIntegerField()
    path = models.CharField(max_length=1024)
    sha256 = models.CharField(max_length=64)
    signature = models.TextField()

    class Meta:
        ordering = ["through_id"]

    def __str__(self) -> str:
        return f"archive through {self.through_id}"


class ExportCursor(models.Model):
    """How far a SIEM exporter has sent events: exports resume from here after an outage."""

    name = models.CharField(max_length=100, unique=True)
    last_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.last_id}"
