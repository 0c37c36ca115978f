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
