"""Partners, users and the credentials they log in with."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone

PERMISSION_WORDS = ("list", "download", "upload", "overwrite", "delete", "rename", "mkdir")
PROTOCOLS = ("ftps", "ftp", "https", "web")


def default_permissions() -> list[str]:
    """Return the permissions a new partner user gets: everything in their own home."""
    return list(PERMISSION_WORDS)


def default_protocols() -> list[str]:
    """Return the protocols a new partner user may use."""
    return ["ftps"]


class Partner(models.Model):
    """A trading-partner organisation."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"

    name = models.CharField(max_length=120, unique=True)
    contact_name = models.CharField(max_length=120, blank=True)
    contact_email = models.EmailField(blank=True)
    contact_phone = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # OpenPGP policy for files this partner sends to the platform.
    pgp_required = models.BooleanField(
        default=False, help_text="reject uploads that are not OpenPGP-encrypted")
    pgp_signature_required = models.BooleanField(
        default=False, help_text="reject uploads without a valid signature by this partner")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A person or system that logs in: admin, operator, auditor, partner user or API client."""

    class Role(models.TextChoices):
        ADMIN = "admin"
        OPERATOR = "operator"
        AUDITOR = "auditor"
        PARTNER = "partner"
        API = "api"

    class LoginMethod(models.TextChoices):
        PASSWORD = "password"
        CERTIFICATE = "certificate"
        PASSWORD_AND_CERTIFICATE = "password+certificate"
        PASSWORD_OR_CERTIFICATE = "password|certificate"

    class Source(models.TextChoices):
        LOCAL = "local"
        DIRECTORY = "directory"

    role = models.CharField(max_length=10, choices=Role.choices, default=Role.PARTNER)
    partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="users"
    )
    home_dir = models.CharField(max_length=500, blank=True)
    quota_bytes = models.BigIntegerField(null=True, blank=True)
    quota_files = models.IntegerField(null=True, blank=True)
    allowed_protocols = models.JSONField(default=default_protocols, blank=True)
    login_method = models.CharField(
        max_length=24, choices=LoginMethod.choices, default=LoginMethod.PASSWORD
    )
    # A directory user's password, role, partner and state live in LDAP: only the
    # directory backend may authenticate them (accounts.directory), never the local hashes.
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.LOCAL)
    permissions = models.JSONField(default=default_permissions, blank=True)
    allowed_ips = models.JSONField(default=list, blank=True)
    password_changed_at = models.DateTimeField(null=True, blank=True)
    must_change_password = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Legacy-client exceptions to the secure defaults; each needs a recorded reason.
    allow_clear_data = models.BooleanField(default=False)
    allow_plain_ftp = models.BooleanField(default=False)
    tls_reuse_exempt = models.BooleanField(default=False)
    policy_exception_reason = models.CharField(max_length=300, blank=True)
    max_sessions = models.PositiveIntegerField(null=True, blank=True)
    # FTPS data-connection bandwidth in bytes/s, shared by the user's transfers; 0: no limit.
    upload_bytes_per_second = models.PositiveBigIntegerField(default=0)
    download_bytes_per_second = models.PositiveBigIntegerField(default=0)
    ftps_mfa_required = models.BooleanField(
        default=False, help_text="on FTPS, require a second factor: the authenticator's code "
        "after the password, or a registered client certificate")

    class Meta:
        ordering = ["username"]

    def __str__(self) -> str:
        return self.username

    @property
    def is_dashboard_role(self) -> bool:
        """Return True for roles that use the dashboard (admin, operator, auditor)."""
        return self.role in (self.Role.ADMIN, self.Role.OPERATOR, self.Role.AUDITOR)


class ClientCertificate(models.Model):
    """A partner's X.509 client certificate, or a CA whose issued certificates are accepted."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="certificates")
    user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.CASCADE, related_name="certificates"
    )
    pem = models.TextField()
    fingerprint_sha256 = models.CharField(max_length=64, unique=True)
    subject = models.CharField(max_length=500)
    issuer = models.CharField(max_length=500)
    serial = models.CharField(max_length=80)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    is_ca = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["not_after"]

    def __str__(self) -> str:
        return f"{self.subject} ({self.fingerprint_sha256[:16]})"


class PgpKey(models.Model):
    """A partner's OpenPGP public key."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="pgp_keys")
    armored = models.TextField()
    fingerprint = models.CharField(max_length=64, unique=True)
    user_ids = models.JSONField(default=list)
    algorithm = models.CharField(max_length=40, blank=True)
    bits = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.fingerprint


class ApiToken(models.Model):
    """A bearer token for the REST API, stored as a SHA-256 digest and shown once."""

    class Scope(models.TextChoices):
        READ = "read"
        TRANSFER = "transfer"
        ADMIN = "admin"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12, db_index=True)
    digest = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    allowed_ips = models.JSONField(default=list, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class LoginFailure(models.Model):
    """One failed login, kept so every process counts failures per address alike."""

    address = models.GenericIPAddressField(db_index=True)
    username = models.CharField(max_length=150, blank=True)
    protocol = models.CharField(max_length=20, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.address} {self.username} {self.at:%Y-%m-%d %H:%M:%S}"


class Ban(models.Model):
    """An address refused on every protocol until it expires or an admin lifts it."""

    address = models.GenericIPAddressField(db_index=True)
    reason = models.CharField(max_length=300)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.address} until {self.expires_at:%Y-%m-%d %H:%M}"


class AcceptedCode(models.Model):
    """A one-time code accepted on FTPS, honoured again from the same address for a grace
    period, because clients open parallel connections re-sending the same password+code."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="accepted_codes")
    address = models.GenericIPAddressField()
    code_digest = models.CharField(max_length=64)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.user_id} from {self.address} until {self.expires_at:%H:%M:%S}"


class PasswordHistory(models.Model):
    """A password hash a user had, kept to refuse reusing the last N passwords."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="password_history")
    password = models.CharField(max_length=256)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user_id} at {self.created_at:%Y-%m-%d}"
