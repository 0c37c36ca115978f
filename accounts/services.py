"""Account use cases: create partner users, and authenticate-and-check-policy for every edge.

`login()` is the one login-policy function: the FTPS gateway, the REST API and the dashboard
all call it, so a rule added here holds on every protocol.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts import bans, certificates, otp_login, passwords
from accounts.models import ClientCertificate, Partner, User
from audit import events
from audit.events import Origin
from audit.spool import AuditSpool
from mft.errors import Conflict, InvalidInput, LoginRefused, LoginUnavailable

log = logging.getLogger(__name__)
_PASSWORD_ALPHABET = string.ascii_letters + string.digits + "-_.!@#%+="
LAST_LOGIN_PRECISION = timedelta(minutes=1)


def generate_password(length: int = 20) -> str:
    """Return a random password that passes the password validators."""
    while True:
        candidate = "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))
        if any(c.isdigit() for c in candidate) and any(c.isalpha() for c in candidate):
            return candidate


def default_home(username: str) -> Path:
    """Return the home folder a user gets when none is given."""
    return Path(settings.HOMES_DIR) / username


def _validated_username(username: str) -> str:
    """Reject usernames that are empty, too long or unsafe as a folder name."""
    allowed = set(string.ascii_letters + string.digits + "._-@")
    if not username or len(username) > 150 or not set(username) <= allowed:
        raise InvalidInput("username must be 1-150 characters of letters, digits, . _ - @")
    if username.startswith("."):
        raise InvalidInput("username must not start with a dot")
    return username


@dataclass(frozen=True)
class NewPartnerUser:
    """What create_partner_user made: the user and, when generated, the password (once)."""

    user: User
    password: str | None
    created: bool


def create_partner_user(
    username: str,
    *,
    partner_name: str,
    password: str | None = None,
    generate: bool = False,
    home: str | None = None,
    quota_bytes: int | None = None,
    quota_files: int | None = None,
    update: bool = False,
    origin: Origin = events.SYSTEM,
) -> NewPartnerUser:
    """Create (or with update=True, change) a partner user allowed FTPS with secure defaults."""
    _validated_username(username)
    if not partner_name.strip():
        raise InvalidInput("partner name must not be empty")
    if password is not None and generate:
        raise InvalidInput("give a password or ask for a generated one, not both")
    for label, value in (("quota bytes", quota_bytes), ("quota files", quota_files)):
        if value is not None and value < 0:
            raise InvalidInput(f"{label} must not be negative")
    secret = generate_password() if generate else password
    with transaction.atomic():
        partner, _ = Partner.objects.get_or_create(name=partner_name.strip())
        user = User.objects.select_for_update().filter(username=username).first()
        created = user is None
        if user is not None and not update:
            raise Conflict(f"user {username!r} already exists (use --update to change it)")
        if user is None:
            user = User(username=username, role=User.Role.PARTNER)
        before = _snapshot(user) if not created else {}
        user.partner = partner
        user.home_dir = str(Path(home).resolve() if home else default_home(username))
        user.quota_bytes = quota_bytes if quota_bytes is not None else user.quota_bytes
        user.quota_files = quota_files if quota_files is not None else user.quota_files
        if secret is not None:
            _set_password(user, secret)
        elif created:
            user.set_unusable_password()
        user.save()
        Path(user.home_dir).mkdir(parents=True, exist_ok=True)
        events.admin_change(origin=origin, action="user.create" if created else "user.update",
                            obj=user, before=before, after=_snapshot(user))
    return NewPartnerUser(user=user, password=secret if generate else None, created=created)


def _set_password(user: User, password: str) -> None:
    """Validate and set a password, recording when it changed."""
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages)) from None
    user.set_password(password)
    user.password_changed_at = timezone.now()


def _snapshot(user: User) -> dict[str, Any]:
    """Return the audited fields of a user (never the password hash)."""
    return {
        "role": user.role,
        "partner": user.partner.name if user.partner else None,
        "home_dir": user.home_dir,
        "quota_bytes": user.quota_bytes,
        "quota_files": user.quota_files,
        "is_active": user.is_active,
        "allowed_protocols": user.allowed_protocols,
        "login_method": user.login_method,
    }


def create_admin(username: str, password: str, *, origin: Origin = events.SYSTEM,
                 must_change: bool = False) -> User:
    """Create the first administrator (`must_change` for a generated password)."""
    _validated_username(username)
    with transaction.atomic():
        if User.objects.filter(username=username).exists():
            raise Conflict(f"user {username!r} already exists")
        user = User(username=username, role=User.Role.ADMIN, is_staff=True, is_superuser=True)
        user.allowed_protocols = ["web", "https"]
        _set_password(user, password)
        user.must_change_password = must_change
        user.save()
        events.admin_change(origin=origin, action="user.create", obj=user,
                            after=_snapshot(user))
    return user


# --- Login ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginAttempt:
    """Everything an edge knows about a login attempt."""

    username: str
    password: str | None
    protocol: str
    source_ip: str | None
    certificate_der: bytes | None = None
    encrypted: bool = True  # False: FTP with no TLS, for users explicitly allowed it


def allows_plain_login(username: str) -> bool:
    """Return True when the user may log in over FTP with no TLS (a legacy partner)."""
    return User.objects.filter(username=username, allow_plain_ftp=True).exists()


def login(attempt: LoginAttempt, *, origin: Origin | None = None,
          more_steps: bool = False, spool: AuditSpool | None = None) -> User:
    """Authenticate and apply the login policy; raise LoginRefused with the audit reason.

    With `more_steps` (the dashboard, whose session starts after a second factor) success
    is audited as `login.password`, and `complete_login` records the `login` itself. With
    a `spool` (the FTPS gateway's), success is recorded through it (see complete_login).
    """
    origin = origin or Origin(source_ip=attempt.source_ip, protocol=attempt.protocol)
    try:
        user, method = _check(attempt)
    except LoginRefused as refusal:
        events.login_failed(origin=origin, username=attempt.username, reason=refusal.reason)
        if refusal.reason != "address banned":
            bans.record_failure(attempt.source_ip, attempt.username, attempt.protocol)
        raise
    except LoginUnavailable as outage:
        # The directory is down: audited, but not the client's fault, so never a ban.
        events.login_failed(origin=origin, username=attempt.username, reason=outage.reason)
        raise
    if more_steps:
        events.login_first_factor_passed(origin=origin, user=user, method=method)
        return user
    return complete_login(user, origin=origin, method=method, spool=spool)


def complete_login(user: User, *, origin: Origin, method: str,
                   spool: AuditSpool | None = None) -> User:
    """Record a login whose every step passed: the audit event and the last-login time.

    With a spool the event is appended to it durably (on the disk before this returns, so
    before the client's reply; its drainer adds it to the chain in a batch), else it is
    written to the chain at once. `last_login` moves at most once per
    LAST_LOGIN_PRECISION: it feeds the inactivity sweep, counted in days, and a client that
    reconnects for every transfer would otherwise add a write per login.
    """
    if _spool_login(spool, user, origin=origin, method=method):
        _touch_last_login(user)
        return user
    with transaction.atomic():
        events.login_succeeded(origin=origin, user=user, method=method)
        _touch_last_login(user)
    return user


def _touch_last_login(user: User) -> None:
    """Move last_login to now when the recorded one is LAST_LOGIN_PRECISION old or more."""
    now = timezone.now()
    if user.last_login is None or now - user.last_login >= LAST_LOGIN_PRECISION:
        user.last_login = now
        user.save(update_fields=["last_login"])


def _spool_login(spool: AuditSpool | None, user: User, *, origin: Origin,
                 method: str) -> bool:
    """Append a successful login to the spool durably; return False when there is none or
    it cannot take the event (disk full, closing), so the caller writes it to the chain."""
    if spool is None:
        return False
    try:
        spool.record_login(origin=origin, user=user, method=method)
    except (OSError, ValueError):
        log.exception("audit spool unavailable; writing the login to the chain")
        return False
    return True


def _check(attempt: LoginAttempt) -> tuple[User, str]:
    """Return the user and the factors used if every rule allows this attempt, else raise
    LoginRefused."""
    if bans.is_banned(attempt.source_ip):
        raise LoginRefused("address banned")
    user, method = _verify_credentials(attempt)
    check_policy(user, protocol=attempt.protocol, source_ip=attempt.source_ip)
    if not attempt.encrypted and not user.allow_plain_ftp:
        raise LoginRefused("plain FTP not allowed")
    # The dashboard lets an expired password through only to its change page; FTPS and the
    # API have no such page, so there the expired password is refused.
    if (attempt.protocol != "web" and "password" in method
            and passwords.is_expired(user)):
        raise LoginRefused("password expired")
    return user, method


def _verify_credentials(attempt: LoginAttempt) -> tuple[User, str]:
    """Check the password and/or certificate as the user's login method demands, and the
    FTPS second factor (accounts.otp_login); return the user and the factors used."""
    password, code = otp_login.split_code(
        username=attempt.username, protocol=attempt.protocol, password=attempt.password,
        certificate_presented=attempt.certificate_der is not None)
    password_user = None
    if password:
        password_user = authenticate(None, username=attempt.username, password=password)
    user = password_user or User.objects.filter(username=attempt.username).first()
    if user is None:
        raise LoginRefused("unknown user")
    if not user.is_active:
        directory = user.source == User.Source.DIRECTORY
        raise LoginRefused("account disabled in the directory" if directory
                           else "account disabled")
    method = user.login_method
    cert_ok = _certificate_matches(user, attempt.certificate_der)
    password_ok = password_user is not None
    if user.source == User.Source.DIRECTORY and not password_ok:
        # Only a bind to the directory proves a directory user (a certificate alone would
        # skip its disabled mark).
        raise LoginRefused("wrong password")
    if method == User.LoginMethod.PASSWORD and not password_ok:
        raise LoginRefused("wrong password")
    if method == User.LoginMethod.CERTIFICATE and not cert_ok:
        raise LoginRefused(_certificate_reason(attempt.certificate_der))
    if method == User.LoginMethod.PASSWORD_AND_CERTIFICATE:
        if not password_ok:
            raise LoginRefused("wrong password")
        if not cert_ok:
            raise LoginRefused(_certificate_reason(attempt.certificate_der))
    if method == User.LoginMethod.PASSWORD_OR_CERTIFICATE and not (password_ok or cert_ok):
        raise LoginRefused("wrong password and no valid certificate")
    factors = otp_login.second_factor(user, protocol=attempt.protocol, code=code,
                                      source_ip=attempt.source_ip, password_ok=password_ok,
                                      cert_ok=cert_ok)
    return user, factors or _method_used(user, attempt)


def _certificate_reason(der: bytes | None) -> str:
    """Name why a certificate was not accepted."""
    if der is None:
        return "client certificate required but none presented"
    not_before, not_after = certificates.validity_of(der)
    if not certificates.is_current(not_before, not_after):
        return "client certificate expired or not yet valid"
    return f"client certificate not registered ({certificates.fingerprint(der)[:16]})"


def _certificate_matches(user: User, der: bytes | None) -> bool:
    """Return True when the presented certificate is valid and registered for the user."""
    if der is None or user.partner_id is None:
        return False
    not_before, not_after = certificates.validity_of(der)
    if not certificates.is_current(not_before, not_after):
        return False
    registered = ClientCertificate.objects.filter(partner_id=user.partner_id, is_ca=False)
    mine = registered.filter(fingerprint_sha256=certificates.fingerprint(der))
    if mine.filter(user__isnull=True).exists() or mine.filter(user=user).exists():
        return any(certificates.is_current(c.not_before, c.not_after) for c in mine)
    authorities = ClientCertificate.objects.filter(partner_id=user.partner_id, is_ca=True)
    return any(
        certificates.is_current(ca.not_before, ca.not_after)
        and certificates.issued_by(der, ca.pem)
        for ca in authorities
    )


def _method_used(user: User, attempt: LoginAttempt) -> str:
    """Describe how the user proved who they are, for the audit log."""
    if user.login_method == User.LoginMethod.PASSWORD_OR_CERTIFICATE:
        return "password" if attempt.password else "certificate"
    return str(user.login_method)


def check_policy(user: User, *, protocol: str, source_ip: str | None) -> None:
    """Refuse a user whose account, partner, expiry, protocol or address forbids this login."""
    now = timezone.now()
    if user.expires_at and user.expires_at <= now:
        raise LoginRefused("account expired")
    if user.partner_id and user.partner and user.partner.status != Partner.Status.ACTIVE:
        raise LoginRefused("partner suspended")
    allowed = set(user.allowed_protocols or [])
    if protocol not in allowed:
        raise LoginRefused(f"protocol {protocol} not allowed for this user")
    if user.allowed_ips and not address_allowed(source_ip, user.allowed_ips):
        raise LoginRefused(f"address {source_ip} not in the user's allow-list")


def address_allowed(source_ip: str | None, networks: list[str]) -> bool:
    """Return True when the address lies in one of the networks."""
    if not source_ip:
        return False
    address = ipaddress.ip_address(source_ip)
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)
