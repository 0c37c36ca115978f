"""Files a partner is expected to deliver by a time of day, and each deadline's outcome."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def every_workday() -> list[int]:
    """Return Monday to Friday as weekday numbers (0 is Monday)."""
    return [0, 1, 2, 3, 4]


class ExpectedFile(models.Model):
    """A partner (optionally one of its users) delivers a matching file by a deadline."""

    name = models.CharField(max_length=120, unique=True)
    partner = models.ForeignKey("accounts.Partner", on_delete=models.CASCADE,
                                related_name="expected_files")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.CASCADE, related_name="+",
                             help_text="blank: any user of the partner")
    folder = models.CharField(max_length=1024, default="/")
    filename_pattern = models.CharField(max_length=255, default="*")
    deadline = models.TimeField(help_text="local time of day in the time zone")
    time_zone = models.CharField(max_length=64, default="UTC")
    weekdays = models.JSONField(default=every_workday, help_text="0 is Monday, 6 is Sunday")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Deadline(models.Model):
    """One deadline of an expected file as checked: met, missing (an open alert), or late."""

    class Status(models.TextChoices):
        MET = "met", "arrived in time"
        MISSING = "missing", "missing (open alert)"
        LATE = "late", "arrived late (alert closed)"

    expected = models.ForeignKey(ExpectedFile, on_delete=models.CASCADE,
                                 related_name="deadlines")
    due_at = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices)
    stored_file = models.ForeignKey("transfers.StoredFile", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    file_path = models.CharField(max_length=1024, blank=True)
    arrived_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-due_at"]
        constraints = [models.UniqueConstraint(fields=["expected", "due_at"],
                                               name="one_deadline_per_time")]
        indexes = [models.Index(fields=["expected", "status"])]

    def __str__(self) -> str:
        return f"{self.expected_id} due {self.due_at:%Y-%m-%d %H:%M} ({self.status})"
