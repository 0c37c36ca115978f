"""What was already announced, so an hourly check tells subscribers each thing once."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ExpiryNotice(models.Model):
    """The lowest expiry threshold already announced for one certificate or key.

    Keyed by what the credential is (kind and fingerprint), with the expiry it had when
    announced: a renewed credential has another expiry (or fingerprint), which resets it.
    """

    class Kind(models.TextChoices):
        SERVER_CERTIFICATE = "server certificate"
        CLIENT_CERTIFICATE = "client certificate"
        PARTNER_PGP_KEY = "partner PGP key"
        PLATFORM_PGP_KEY = "platform PGP key"

    kind = models.CharField(max_length=24, choices=Kind.choices)
    fingerprint = models.CharField(max_length=128)
    label = models.CharField(max_length=500, blank=True)
    expires_at = models.DateTimeField()
    threshold_days = models.PositiveIntegerField(help_text="0: announced as expired")
    announced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["expires_at"]
        constraints = [models.UniqueConstraint(fields=["kind", "fingerprint"],
                                               name="one_expiry_notice_per_credential")]

    def __str__(self) -> str:
        return f"{self.kind} {self.fingerprint[:16]}: {self.threshold_days} days"


class PostureNotice(models.Model):
    """A posture finding already announced; removed when the finding is fixed."""

    finding = models.CharField(max_length=80, unique=True)
    severity = models.CharField(max_length=10)
    title = models.CharField(max_length=200)
    announced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["finding"]

    def __str__(self) -> str:
        return self.finding
