"""Stored files, their pipeline steps and upload quota reservations."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class FileState(models.TextChoices):
    PARTIAL = "partial", "partial upload (resumable)"
    RECEIVED = "received"
    DECRYPTING = "decrypting"
    SCANNING = "scanning"
    HELD = "held"
    INFECTED = "infected", "infected (quarantined)"
    CLEAN = "clean"
    DLP = "dlp"
    READY = "ready"
    REJECTED = "rejected"
    DELETED = "deleted"


# States that occupy the uploader's path: a second file cannot take the same name.
LIVE_STATES = [s for s in FileState.values if s not in (FileState.DELETED, FileState.INFECTED,
                                                        FileState.REJECTED)]
# States whose bytes count against the uploader's quota.
CHARGED_STATES = LIVE_STATES


class StoredFile(models.Model):
    """A file a user uploaded, wherever it is in its life."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="files"
    )
    owner_username = models.CharField(max_length=150)
    partner = models.ForeignKey(
        "accounts.Partner", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="files",
    )
    path = models.CharField(max_length=1024, help_text="path inside the owner's home, /-rooted")
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=12, choices=FileState.choices,
                             default=FileState.RECEIVED, db_index=True)
    state_reason = models.CharField(max_length=500, blank=True)
    encrypted_at_rest = models.BooleanField(default=True)
    storage_path = models.CharField(max_length=1024, help_text="where the bytes are on disk")
    protocol = models.CharField(max_length=20, blank=True)
    scan_signature = models.CharField(max_length=200, blank=True)
    scan_engine = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    received_at = models.DateTimeField(null=True, blank=True)
    state_changed_at = models.DateTimeField(default=timezone.now)
    ready_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "path"], condition=Q(state__in=LIVE_STATES),
                name="one_live_file_per_path",
            )
        ]
        indexes = [models.Index(fields=["owner", "state"])]

    def __str__(self) -> str:
        return f"{self.owner_username}:{self.path}"


class PipelineStep(models.Model):
    """One step of a file's pipeline; the database, not the broker, is the record of work."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        WAITING = "waiting", "waiting to retry"

    stored_file = models.ForeignKey(StoredFile, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=20)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True, db_index=True)
    not_before = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=40, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["stored_file", "name"], name="one_step_per_name")
        ]

    def __str__(self) -> str:
        return f"{self.stored_file_id}:{self.name}:{self.status}"


class QuotaReservation(models.Model):
    """Bytes an upload in progress has claimed against its owner's quota."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="quota_reservations")
    bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    # Refreshed on every claim; a reservation left by a crashed process goes stale and is
    # swept, so a crash never shrinks a quota for good.
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.owner_id}: {self.bytes} bytes"


class DlpRule(models.Model):
    """A partner's data-loss-prevention rule: what to look for and whether to block."""

    class Kind(models.TextChoices):
        CARD = "card", "payment card number"
        SSN = "ssn", "US social security number"
        IBAN = "iban"
        REGEX = "regex", "custom regular expression"

    class Action(models.TextChoices):
        FLAG = "flag"
        BLOCK = "block"

    partner = models.ForeignKey("accounts.Partner", on_delete=models.CASCADE,
                                related_name="dlp_rules")
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    pattern = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=5, choices=Action.choices, default=Action.FLAG)
    enabled = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["partner", "name"],
                                               name="one_dlp_rule_name_per_partner")]

    def __str__(self) -> str:
        return f"{self.partner_id}:{self.name} ({self.kind}, {self.action})"


class GatewaySession(models.Model):
    """A logged-in FTPS session, as its gateway process last published it (transfers.sessions).

    Live only while the gateway process's heartbeat (mft.ProcessHeartbeat, by `gateway`
    name) is; the process deletes the row when the session ends.
    """

    class Direction(models.TextChoices):
        UPLOAD = "upload"
        DOWNLOAD = "download"

    session_id = models.CharField(max_length=32, unique=True)
    gateway = models.CharField(max_length=200, db_index=True,
                               help_text="the gateway process's heartbeat name")
    host = models.CharField(max_length=200)
    pid = models.IntegerField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE,
                             related_name="gateway_sessions")
    username = models.CharField(max_length=150)
    partner = models.ForeignKey("accounts.Partner", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="gateway_sessions")
    remote_address = models.GenericIPAddressField(null=True, blank=True)
    remote_port = models.IntegerField(null=True, blank=True)
    implicit = models.BooleanField(default=False)
    tls_version = models.CharField(max_length=20, blank=True)
    tls_cipher = models.CharField(max_length=100, blank=True)
    started_at = models.DateTimeField()
    last_command_at = models.DateTimeField(null=True, blank=True)
    transfer_direction = models.CharField(max_length=8, choices=Direction.choices, blank=True)
    transfer_path = models.CharField(max_length=1024, blank=True)
    transfer_bytes = models.BigIntegerField(default=0)
    transfer_size = models.BigIntegerField(null=True, blank=True)
    transfer_started_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    # Set by an admin or operator; the session's gateway process acts on it at its next tick.
    disconnect_requested_at = models.DateTimeField(null=True, blank=True)
    disconnect_requested_by = models.CharField(max_length=150, blank=True)
    disconnect_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["started_at", "id"]

    def __str__(self) -> str:
        return f"{self.username}@{self.remote_address} ({self.session_id})"
