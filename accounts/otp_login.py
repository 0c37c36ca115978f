"""A second factor on FTPS: the authenticator's code after the password, or a certificate.

FTPS clients have no second prompt, so a user whose policy requires a second factor on FTPS
(`User.ftps_mfa_required`) sends the password followed by the current six-digit code from
the authenticator enrolled for the dashboard (`accounts.mfa`), as SFTPGo does, or presents a
registered client certificate with the password alone. A code is accepted once: django-otp's
TOTP device refuses a time step it has already seen. Clients open parallel connections and
reconnect re-sending the same password+code, so an accepted code stays valid for
`MFT_FTPS_OTP_GRACE_SECONDS` from the same user *and* address; that record lives in the
database, so every gateway process agrees. `accounts.services` calls this module from the one
login-policy function; a refusal there is audited and counted toward a ban like a wrong
password.
"""

from __future__ import annotations

from base64 import b32encode
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import AcceptedCode, User
from audit import events
from audit.events import Origin
from mft.errors import InvalidInput, LoginRefused

CODE_DIGITS = 6
PROTOCOLS = ("ftps", "ftp")
NEEDS_SECOND_FACTOR = ("second factor required: append the authenticator's code to the "
                       "password or present a registered client certificate")


@dataclass(frozen=True)
class IssuedAuthenticator:
    """A new authenticator's secret, to hand to the user once (as text or otpauth:// URL)."""

    device: TOTPDevice
    secret: str
    otpauth_url: str


def issue_authenticator(user: User, *, origin: Origin) -> IssuedAuthenticator:
    """Give a user who cannot enrol on the dashboard (a partner) a new confirmed authenticator,
    replacing any they had (a lost phone); return its secret, shown once."""
    if user.is_dashboard_role:
        raise InvalidInput("dashboard users enrol their own authenticator when signing in")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        AcceptedCode.objects.filter(user=user).delete()
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
        events.admin_change(origin=origin, action="mfa.issue", obj=user,
                            after={"authenticator": True})
    secret = b32encode(device.bin_key).decode().rstrip("=")
    return IssuedAuthenticator(device=device, secret=secret, otpauth_url=device.config_url)


def split_code(*, username: str, protocol: str, password: str | None,
               certificate_presented: bool) -> tuple[str | None, str | None]:
    """Return the password and the one-time code a PASS line carries (None when no code is
    due: the user needs no second factor here, or a certificate is the second factor)."""
    if protocol not in PROTOCOLS or not password or len(password) < CODE_DIGITS:
        return password, None
    code = password[-CODE_DIGITS:]
    # Checked before the query: a line not ending in six digits carries no code whatever
    # the user's policy, and most passwords do not, so most logins skip the query.
    if not code.isdigit():
        return password, None
    method = (User.objects.filter(username=username, ftps_mfa_required=True)
              .values_list("login_method", flat=True).first())
    if method is None or method == User.LoginMethod.PASSWORD_AND_CERTIFICATE:
        return password, None
    if certificate_presented and method != User.LoginMethod.CERTIFICATE:
        return password, None
    return password[:-CODE_DIGITS], code


def second_factor(user: User, *, protocol: str, source_ip: str | None, code: str | None,
                  password_ok: bool, cert_ok: bool) -> str | None:
    """Return the factors of a login whose policy needs two ("password+totp"), or None when
    it needs no second factor here; raise LoginRefused when the factors fall short."""
    if protocol not in PROTOCOLS or not user.ftps_mfa_required:
        return None
    proved = [name for name, ok in (("password", password_ok), ("certificate", cert_ok)) if ok]
    # The code is tried only once the first factor held, so a stranger cannot burn it.
    if code is not None and len(proved) == 1:
        _accept(user, code, source_ip)
        proved.append("totp")
    if len(proved) < 2:
        raise LoginRefused(NEEDS_SECOND_FACTOR)
    return "+".join(proved)


def _accept(user: User, code: str, source_ip: str | None) -> None:
    """Accept a code not used before, or one this user was granted from this address within
    the grace period; otherwise raise LoginRefused."""
    digest = _digest(user, code)
    now = timezone.now()
    with transaction.atomic():
        # The row lock serialises parallel logins of one user (SQLite: IMMEDIATE transaction),
        # so the second of two connections sent at once finds the first one's grace record.
        device = (TOTPDevice.objects.select_for_update()
                  .filter(user=user, confirmed=True).first())
        if device is None:
            raise LoginRefused("one-time code given but no authenticator is enrolled")
        if _within_grace(user, source_ip, digest, now):
            return
        accepted = device.verify_token(code)
        if accepted:
            _remember(user, source_ip, digest, now)
    if not accepted:
        # Raised outside the transaction so django-otp's throttle count is kept.
        raise LoginRefused("wrong or already used one-time code")


def _digest(user: User, code: str) -> str:
    """Return a keyed digest of a code for one user (the grace record never holds the code)."""
    return salted_hmac("accounts.otp_login", f"{user.pk}:{code}", algorithm="sha256").hexdigest()


def _within_grace(user: User, source_ip: str | None, digest: str, now: datetime) -> bool:
    """Return True when this code was accepted for this user from this address lately."""
    if not source_ip:
        return False
    recent = AcceptedCode.objects.filter(user=user, address=source_ip, expires_at__gt=now)
    return any(constant_time_compare(row, digest)
               for row in recent.values_list("code_digest", flat=True))


def _remember(user: User, source_ip: str | None, digest: str, now: datetime) -> None:
    """Record an accepted code for the grace period, dropping the user's expired records."""
    AcceptedCode.objects.filter(user=user, expires_at__lte=now).delete()
    grace = settings.FTPS_OTP_GRACE_SECONDS
    if source_ip and grace > 0:
        AcceptedCode.objects.create(user=user, address=source_ip, code_digest=digest,
                                    expires_at=now + timedelta(seconds=grace))
