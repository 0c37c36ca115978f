"""Partner endpoints, push routes, pull jobs, and deliveries with their attempts (receipts).

The database is the record of work: a delivery is a row with a lease, claimed by one worker
at a time; each try is a `DeliveryAttempt` row. Secrets live only in `*_secret` columns,
sealed by `deliveries.secrets`; nothing shows them.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Length
from django.db.models.lookups import Exact
from django.utils import timezone

from deliveries import validation

# Longest wait between a pull's two listings: the session idles meanwhile, and servers
# (Portside's gateway included, after MFT_GATEWAY_IDLE_TIMEOUT) close idle sessions.
MAX_STABLE_SECONDS = 120


class PartnerEndpoint(models.Model):
    """A partner's FTPS server we send files to or fetch files from."""

    class TlsMode(models.TextChoices):
        EXPLICIT = "explicit", "explicit FTPS (AUTH TLS)"
        IMPLICIT = "implicit", "implicit FTPS (TLS from the first byte)"

    class DataMode(models.TextChoices):
        PASSIVE = "passive"
        ACTIVE = "active"

    partner = models.ForeignKey("accounts.Partner", on_delete=models.PROTECT,
                                related_name="endpoints")
    name = models.CharField(max_length=120)
    tls_mode = models.CharField(max_length=10, choices=TlsMode.choices, default=TlsMode.EXPLICIT)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=21)
    tls_server_name = models.CharField(
        max_length=255, blank=True,
        help_text="name the server certificate must carry, when it differs from the host")
    username = models.CharField(max_length=150)
    password_secret = models.TextField(blank=True, editable=False)
    client_cert_pem = models.TextField(blank=True, help_text="our client certificate (PEM)")
    client_key_secret = models.TextField(blank=True, editable=False)
    remote_folder = models.CharField(max_length=1024, default="/")
    data_mode = models.CharField(max_length=8, choices=DataMode.choices,
                                 default=DataMode.PASSIVE)
    ca_bundle_pem = models.TextField(blank=True,
                                     help_text="CA certificates that may sign the server's")
    pinned_sha256 = models.CharField(max_length=64, blank=True,
                                     help_text="SHA-256 of the server certificate, lowercase hex")
    timeout_seconds = models.PositiveIntegerField(default=60)
    max_connections = models.PositiveSmallIntegerField(
        default=2, help_text="deliveries to this endpoint running at once")
    use_temp_name = models.BooleanField(
        default=True, help_text="upload under a temporary name, then rename")
    # Authenticated with every sealed secret of the row, so a sealed value copied from
    # another row or column does not open.
    secret_context = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["partner__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "name"], name="endpoint_name_per_partner"),
            # TLS verification is never skipped: a CA bundle, a pinned certificate, or both.
            models.CheckConstraint(condition=~Q(ca_bundle_pem="") | ~Q(pinned_sha256=""),
                                   name="endpoint_verifies_tls"),
            models.CheckConstraint(
                condition=Q(pinned_sha256="") | Q(Exact(Length("pinned_sha256"), 64)),
                name="endpoint_pin_is_sha256"),
            models.CheckConstraint(condition=~Q(password_secret="") | ~Q(client_key_secret=""),
                                   name="endpoint_has_credentials"),
            models.CheckConstraint(
                condition=(Q(client_cert_pem="") & Q(client_key_secret=""))
                | (~Q(client_cert_pem="") & ~Q(client_key_secret="")),
                name="endpoint_cert_with_key"),
            models.CheckConstraint(condition=Q(port__gte=1) & Q(port__lte=65535),
                                   name="endpoint_port_range"),
            models.CheckConstraint(condition=Q(max_connections__gte=1),
                                   name="endpoint_max_connections_positive"),
            models.CheckConstraint(condition=Q(timeout_seconds__gte=1),
                                   name="endpoint_timeout_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.partner} / {self.name}"

    @property
    def implicit(self) -> bool:
        return self.tls_mode == self.TlsMode.IMPLICIT

    def clean(self) -> None:
        """Refuse an endpoint without TLS verification, credentials or a sane address."""
        errors: dict[str, str] = {}
        if not self.ca_bundle_pem and not self.pinned_sha256:
            errors["pinned_sha256"] = ("set a CA bundle or a pinned certificate fingerprint: "
                                       "TLS verification is never skipped")
        for name, check in (("host", validation.host), ("pinned_sha256", validation.fingerprint),
                            ("ca_bundle_pem", validation.ca_bundle),
                            ("remote_folder", validation.remote_folder)):
            try:
                check(getattr(self, name))
            except ValueError as exc:
                errors.setdefault(name, str(exc))
        if not self.password_secret and not self.client_key_secret:
            errors["password_secret"] = "set a password, a client certificate, or both"
        if bool(self.client_cert_pem) != bool(self.client_key_secret):
            errors["client_cert_pem"] = "a client certificate needs its private key"
        if errors:
            raise ValidationError(errors)


class Route(models.Model):
    """Which ready files go to which endpoint, when, and whether PGP-encrypted."""

    class Trigger(models.TextChoices):
        ARRIVAL = "arrival", "on arrival"
        SCHEDULE = "schedule", "on a schedule"

    name = models.CharField(max_length=120, unique=True)
    endpoint = models.ForeignKey(PartnerEndpoint, on_delete=models.PROTECT,
                                 related_name="routes")
    source_partner = models.ForeignKey("accounts.Partner", null=True, blank=True,
                                       on_delete=models.PROTECT, related_name="+")
    source_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.PROTECT, related_name="+")
    source_folder = models.CharField(max_length=1024, default="/")
    include_subfolders = models.BooleanField(default=False)
    filename_pattern = models.CharField(max_length=255, default="*")
    remote_folder = models.CharField(max_length=1024, blank=True,
                                     help_text="blank: the endpoint's folder")
    pgp_encrypt = models.BooleanField(default=False)
    pgp_sign = models.BooleanField(
        default=False, help_text="also sign the encrypted copy with the platform's key")
    pgp_key = models.ForeignKey("accounts.PgpKey", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="+",
                                help_text="blank: every key of the endpoint's partner")
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.ARRIVAL)
    cron = models.CharField(max_length=120, blank=True,
                            help_text="minute hour day-of-month month day-of-week")
    time_zone = models.CharField(max_length=64, default="UTC",
                                help_text="time zone of the schedule and the window")
    window_start = models.TimeField(null=True, blank=True)
    window_end = models.TimeField(null=True, blank=True)
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", null=True,
                                         blank=True, on_delete=models.SET_NULL,
                                         related_name="+", editable=False)
    enabled = models.BooleanField(default=True)
    # Files that became ready while the route was off are not caught up when it is back on.
    active_since = models.DateTimeField(default=timezone.now, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            # A route with no source would send every file of the platform to a partner.
            models.CheckConstraint(
                condition=Q(source_partner__isnull=False) | Q(source_user__isnull=False),
                name="route_has_source"),
            models.CheckConstraint(condition=Q(trigger="arrival") | ~Q(cron=""),
                                   name="route_schedule_has_cron"),
            models.CheckConstraint(
                condition=Q(window_start__isnull=True, window_end__isnull=True)
                | Q(window_start__isnull=False, window_end__isnull=False),
                name="route_window_complete"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Refuse a route without a source, a schedule without cron, or half a window."""
        errors: dict[str, str] = {}
        if self.source_partner_id is None and self.source_user_id is None:
            errors["source_partner"] = "choose a source partner, a source user, or both"
        if self.trigger == self.Trigger.SCHEDULE and not self.cron:
            errors["cron"] = "a scheduled route needs a cron expression"
        if (self.window_start is None) != (self.window_end is None):
            errors["window_end"] = "give both ends of the delivery window, or neither"
        for name, check in (("cron", validation.cron), ("time_zone", validation.timezone_name),
                            ("source_folder", validation.remote_folder),
                            ("filename_pattern", validation.pattern)):
            try:
                check(getattr(self, name))
            except ValueError as exc:
                errors.setdefault(name, str(exc))
        if errors:
            raise ValidationError(errors)


class Pull(models.Model):
    """A scheduled fetch of files from a partner's endpoint into a local user's folder."""

    class AfterDownload(models.TextChoices):
        KEEP = "keep", "leave the remote file"
        DELETE = "delete", "delete the remote file"
        MOVE = "move", "move the remote file to another folder"

    name = models.CharField(max_length=120, unique=True)
    endpoint = models.ForeignKey(PartnerEndpoint, on_delete=models.PROTECT,
                                 related_name="pulls")
    remote_folder = models.CharField(max_length=1024, blank=True,
                                     help_text="blank: the endpoint's folder")
    filename_pattern = models.CharField(max_length=255, default="*")
    local_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   related_name="+")
    local_folder = models.CharField(max_length=1024, default="/")
    after_download = models.CharField(max_length=8, choices=AfterDownload.choices,
                                      default=AfterDownload.KEEP)
    move_to_folder = models.CharField(max_length=1024, blank=True)
    cron = models.CharField(max_length=120)
    time_zone = models.CharField(max_length=64, default="UTC")
    max_files_per_run = models.PositiveIntegerField(default=100)
    # A partner may still be writing a file we list: only files that look finished are taken.
    stable_seconds = models.PositiveSmallIntegerField(
        default=10, help_text="list the folder twice this many seconds apart and fetch only "
        "files whose size and modification time did not change (0: one listing)")
    min_age_seconds = models.PositiveIntegerField(
        default=0, help_text="fetch only files last modified at least this long ago, by the "
        "server's clock (0: no minimum)")
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", null=True,
                                         blank=True, on_delete=models.SET_NULL,
                                         related_name="+", editable=False)
    enabled = models.BooleanField(default=True)
    last_listed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=~Q(after_download="move") | ~Q(move_to_folder=""),
                                   name="pull_move_has_folder"),
            models.CheckConstraint(condition=~Q(cron=""), name="pull_has_cron"),
            # The connection idles between the two listings; servers drop idle sessions.
            models.CheckConstraint(condition=Q(stable_seconds__lte=MAX_STABLE_SECONDS),
                                   name="pull_stable_seconds_bounded"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Refuse a pull without a schedule, or a move without its folder."""
        errors: dict[str, str] = {}
        if self.after_download == self.AfterDownload.MOVE and not self.move_to_folder:
            errors["move_to_folder"] = "moving remote files needs the folder to move them to"
        if self.stable_seconds > MAX_STABLE_SECONDS:
            errors["stable_seconds"] = f"at most {MAX_STABLE_SECONDS} seconds"
        for name, check in (("cron", validation.cron), ("time_zone", validation.timezone_name),
                            ("local_folder", validation.remote_folder),
                            ("filename_pattern", validation.pattern)):
            try:
                check(getattr(self, name))
            except ValueError as exc:
                errors.setdefault(name, str(exc))
        if errors:
            raise ValidationError(errors)


class Delivery(models.Model):
    """One file sent to (push) or fetched from (pull) an endpoint: the receipt."""

    class Direction(models.TextChoices):
        PUSH = "push"
        PULL = "pull"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        WAITING = "waiting", "waiting to retry"
        DELIVERED = "delivered"
        FAILED = "failed"
        CANCELLED = "cancelled"

    direction = models.CharField(max_length=4, choices=Direction.choices)
    route = models.ForeignKey(Route, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="deliveries")
    pull = models.ForeignKey(Pull, null=True, blank=True, on_delete=models.PROTECT,
                             related_name="deliveries")
    endpoint = models.ForeignKey(PartnerEndpoint, on_delete=models.PROTECT,
                                 related_name="deliveries")
    stored_file = models.ForeignKey("transfers.StoredFile", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="deliveries",
                                    help_text="push: the file sent; pull: the file received")
    local_owner = models.CharField(max_length=150, blank=True)
    local_path = models.CharField(max_length=1024, blank=True)
    source_size = models.BigIntegerField(null=True, blank=True)
    source_sha256 = models.CharField(max_length=64, blank=True,
                                     help_text="SHA-256 of the file's plaintext")
    remote_path = models.CharField(max_length=1024)
    remote_key = models.CharField(max_length=1300, blank=True,
                                  help_text="pull: the remote file's name, size and time")
    pgp_encrypted = models.BooleanField(default=False)
    pgp_signed = models.BooleanField(default=False)
    sent_size = models.BigIntegerField(null=True, blank=True)
    sent_sha256 = models.CharField(max_length=64, blank=True,
                                   help_text="SHA-256 of the bytes on the wire")
    verified_by = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING,
                              db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True, db_index=True)
    not_before = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    landed_at = models.DateTimeField(null=True, blank=True,
                                     help_text="pull: when the file entered the pipeline")
    remote_action_done = models.BooleanField(default=False)
    last_error = models.CharField(max_length=1000, blank=True)
    requested_by = models.CharField(max_length=150, default="system")
    resend_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="resends")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.CheckConstraint(condition=Q(direction="pull") | Q(route__isnull=False),
                                   name="push_has_route"),
            models.CheckConstraint(condition=Q(direction="push") | Q(pull__isnull=False),
                                   name="pull_has_pull"),
            # A file goes once per route; a re-send is an explicit, audited new row.
            models.UniqueConstraint(fields=["route", "stored_file"],
                                    condition=Q(resend_of__isnull=True, direction="push"),
                                    name="one_delivery_per_route_and_file"),
            models.UniqueConstraint(fields=["pull", "remote_key"],
                                    condition=Q(resend_of__isnull=True, direction="pull"),
                                    name="one_delivery_per_remote_file"),
        ]
        indexes = [models.Index(fields=["endpoint", "status"]),
                   models.Index(fields=["status", "not_before"])]

    def __str__(self) -> str:
        return f"{self.direction} {self.remote_path} ({self.status})"


class DeliveryAttempt(models.Model):
    """One try at a delivery: when, by whom, how far it got, what the remote said."""

    class Outcome(models.TextChoices):
        RUNNING = "", "running"
        SUCCESS = "success"
        RETRY = "retry", "failed, will retry"
        FAILED = "failed"
        CANCELLED = "cancelled"
        ABANDONED = "abandoned", "abandoned (worker stopped)"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts_log")
    number = models.PositiveIntegerField()
    worker = models.CharField(max_length=200, blank=True)
    stage = models.CharField(max_length=20, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True)
    bytes_transferred = models.BigIntegerField(default=0)
    resumed_from = models.BigIntegerField(default=0)
    remote_reply = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=1000, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"],
                                               name="one_attempt_per_number")]

    def __str__(self) -> str:
        return f"{self.delivery_id}#{self.number} {self.outcome or 'running'}"
