"""Process heartbeats: how /healthz knows the worker, gateway and beat are alive."""

from __future__ import annotations

from django.db import models


class ProcessHeartbeat(models.Model):
    """A running Portside process that reports in every few seconds."""

    class Kind(models.TextChoices):
        WORKER = "worker"
        GATEWAY = "gateway"
        BEAT = "beat"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=200, unique=True)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    info = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class PostureAcceptance(models.Model):
    """An admin's written acceptance of a compliance finding (audited)."""

    finding = models.CharField(max_length=100, unique=True)
    justification = models.TextField()
    accepted_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.finding} accepted by {self.accepted_by}"
