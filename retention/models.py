"""Per-partner retention: how long stored files and delivery records are kept."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class RetentionPolicy(models.Model):
    """Delete or archive a partner's finished files, and delete its delivery records, after N
    days. Blank day counts keep them forever."""

    class Action(models.TextChoices):
        DELETE = "delete", "delete the bytes"
        ARCHIVE = "archive", "move the bytes to the archive folder"

    partner = models.OneToOneField("accounts.Partner", on_delete=models.CASCADE,
                                   related_name="retention_policy")
    files_after_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="days after a file's last state change; blank: keep")
    files_action = models.CharField(max_length=8, choices=Action.choices,
                                    default=Action.DELETE)
    deliveries_after_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="days after a delivery finished; blank: keep")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["partner__name"]
        verbose_name_plural = "retention policies"
        constraints = [
            models.CheckConstraint(condition=Q(files_after_days__isnull=True)
                                   | Q(files_after_days__gte=1), name="retention_files_days"),
            models.CheckConstraint(condition=Q(deliveries_after_days__isnull=True)
                                   | Q(deliveries_after_days__gte=1),
                                   name="retention_deliveries_days"),
        ]

    def __str__(self) -> str:
        return f"retention for {self.partner_id}"
