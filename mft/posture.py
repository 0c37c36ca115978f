"""Compliance posture: check the running configuration and report findings.

Each finding has a stable id, a severity and the controls it maps to (PCI DSS v4.0
requirement numbers, HIPAA Security Rule safeguards), so an auditor can trace it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import ClientCertificate, User
from audit import chain, events
from audit.events import Origin
from mft.errors import InvalidInput, NotFound
from mft.models import PostureAcceptance

SEVERITIES = ("critical", "high", "medium", "low", "info")
_IN_TRANSIT = ("PCI DSS 4.2.1", "HIPAA 164.312(e)(1)")


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str
    title: str
    detail: str
    controls: tuple[str, ...]
    accepted: dict[str, str] | None = field(default=None, compare=False)


def _users_with(flag: str) -> list[str]:
    """Return the usernames of active users with a policy exception flag set."""
    return list(User.objects.filter(is_active=True, **{flag: True})
                .values_list("username", flat=True)[:20])


def _transport_findings() -> list[Finding]:
    found = []
    if plain := _users_with("allow_plain_ftp"):
        found.append(Finding("ftp.plain-allowed", "high", "Plain FTP allowed for users",
                             f"users: {', '.join(plain)}", _IN_TRANSIT))
    if clear := _users_with("allow_clear_data"):
        found.append(Finding("ftp.clear-data", "high", "Unencrypted data connections allowed",
                             f"users: {', '.join(clear)}", _IN_TRANSIT))
    if exempt := _users_with("tls_reuse_exempt"):
        found.append(Finding("tls.reuse-not-required", "medium",
                             "TLS session reuse not required for users",
                             f"users: {', '.join(exempt)}", ("PCI DSS 4.2.1",)))
    if settings.TLS_MIN_VERSION not in ("TLSv1.2", "TLSv1.3"):
        found.append(Finding("tls.old-version", "high", "TLS below 1.2 allowed",
                             settings.TLS_MIN_VERSION, ("PCI DSS 4.2.1",)))
    return found


def _scanning_findings() -> list[Finding]:
    if settings.SCAN_MODE == "off":
        return [Finding("scan.off", "high", "Virus scanning switched off", "MFT_SCAN=off",
                        ("PCI DSS 5.2.1", "HIPAA 164.308(a)(5)(ii)(B)"))]
    if not settings.CLAMD_ADDRESS:
        return [Finding("scan.not-configured", "high", "No virus scanner configured",
                        "MFT_CLAMD is unset: uploads are held", ("PCI DSS 5.2.1",))]
    return []


def _account_findings() -> list[Finding]:
    found = []
    validators: list[dict[str, Any]] = list(settings.AUTH_PASSWORD_VALIDATORS)  # type: ignore[arg-type]
    min_length = next((int(v["OPTIONS"]["min_length"]) for v in validators
                       if v["NAME"].endswith("MinimumLengthValidator")), 0)
    if min_length < 12 or settings.PASSWORD_HISTORY < 4:
        found.append(Finding("password.weak-policy", "medium", "Weak password policy",
                             f"minimum length {min_length}, history {settings.PASSWORD_HISTORY}",
                             ("PCI DSS 8.3.6", "PCI DSS 8.3.7")))
    if not settings.PASSWORD_MAX_AGE_DAYS_PARTNER:
        found.append(Finding("password.partner-no-expiry", "low",
                             "Partner passwords never expire",
                             "unattended partner jobs; rotate them by agreement",
                             ("PCI DSS 8.3.9",)))
    if missing := _staff_without_totp():
        found.append(Finding("mfa.staff-without-totp", "high", "Staff accounts without TOTP",
                             f"users: {', '.join(missing)}", ("PCI DSS 8.4.2",
                                                              "HIPAA 164.312(d)")))
    return found + _ftps_single_factor()


def _ftps_single_factor() -> list[Finding]:
    """Report FTPS users whose login needs one factor only (no code, no certificate pair)."""
    candidates = (User.objects.filter(is_active=True, ftps_mfa_required=False)
                  .exclude(login_method=User.LoginMethod.PASSWORD_AND_CERTIFICATE)
                  .values_list("username", "allowed_protocols").iterator())
    # JSON containment is not portable (SQLite), so the protocol is checked here.
    single = (name for name, protocols in candidates if "ftps" in (protocols or []))
    if not (names := list(itertools.islice(single, 20))):
        return []
    # Low: many partner jobs are unattended; accept it, or set `ftps_mfa_required`.
    return [Finding("mfa.ftps-single-factor", "low", "FTPS logins with a single factor",
                    f"users: {', '.join(names)}", ("PCI DSS 8.4.3", "HIPAA 164.312(d)"))]


def _staff_without_totp() -> list[str]:
    """Return admins and operators with no confirmed TOTP device (when MFA is installed)."""
    staff = User.objects.filter(is_active=True, role__in=[User.Role.ADMIN, User.Role.OPERATOR])
    try:
        from django_otp.plugins.otp_totp.models import TOTPDevice
    except (ImportError, RuntimeError):
        return list(staff.values_list("username", flat=True)[:20])
    from sso.models import IdentityProviderDevice

    enrolled = TOTPDevice.objects.filter(confirmed=True).values_list("user_id", flat=True)
    # A single sign-on user whose provider asserted MFA (its `amr`) holds this device
    # instead of a TOTP one; one without it is sent to TOTP enrolment at sign-in.
    vouched = IdentityProviderDevice.objects.values_list("user_id", flat=True)
    return list(staff.exclude(pk__in=enrolled).exclude(pk__in=vouched)
                .values_list("username", flat=True)[:20])


def _directory_findings() -> list[Finding]:
    """Report a directory connection that sends passwords in clear or trusts any certificate."""
    from accounts.checks import check_directory_tls

    titles = {"accounts.W001": ("ldap.cleartext", "Directory passwords sent in clear"),
              "accounts.W002": ("ldap.tls-unverified", "Directory certificate not verified")}
    return [Finding(titles[w.id][0], "high", titles[w.id][1], w.msg,
                    ("PCI DSS 4.2.1", "PCI DSS 8.3.2", "HIPAA 164.312(e)(1)"))
            for w in check_directory_tls() if w.id in titles]


def _certificate_findings() -> list[Finding]:
    soon = timezone.now() + timedelta(days=30)
    expiring = ClientCertificate.objects.filter(not_after__lte=soon)
    found = []
    if expiring.exists():
        names = ", ".join(c.subject[:60] for c in expiring[:10])
        found.append(Finding("cert.expiring", "medium", "Client certificates expiring within "
                             "30 days or expired", names, ("PCI DSS 4.2.1.1",)))
    server = _server_certificate_expiry()
    if server is not None and server <= soon:
        found.append(Finding("cert.server-expiring", "high", "Server certificate expiring",
                             f"expires {server:%Y-%m-%d}", ("PCI DSS 4.2.1",)))
    return found


def _server_certificate_expiry():  # type: ignore[no-untyped-def]
    """Return the gateway certificate's expiry, or None when there is none yet."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(settings.TLS_CERT_FILE.read_bytes())
    except (OSError, ValueError):
        return None
    return cert.not_valid_after_utc


def _platform_findings(verify_audit: bool) -> list[Finding]:
    found = []
    if settings.DEBUG:
        found.append(Finding("web.debug", "high", "DEBUG is on", "MFT_DEBUG=on",
                             ("PCI DSS 6.5.6",)))
    if not settings.ENCRYPT_AT_REST:
        found.append(Finding("storage.unencrypted", "high", "Encryption at rest is off",
                             "MFT_ENCRYPT_AT_REST=off", ("PCI DSS 3.5.1",
                                                         "HIPAA 164.312(a)(2)(iv)")))
    if not settings.PRODUCTION:
        found.append(Finding("web.development-mode", "info", "Web app in development mode",
                             f"MFT_PUBLIC_URL={settings.PUBLIC_URL} is not https",
                             ("PCI DSS 4.2.1",)))
    if verify_audit:
        _, broken = chain.verify()
        if broken is not None:
            found.append(Finding("audit.chain-broken", "critical", "Audit chain broken",
                                 f"event {broken.event_id}: {broken.reason}",
                                 ("PCI DSS 10.3.2", "HIPAA 164.312(b)")))
    return found


def findings(*, verify_audit: bool = True) -> list[Finding]:
    """Return every current finding, most severe first, with any acceptance attached."""
    all_found = (_transport_findings() + _directory_findings() + _scanning_findings()
                 + _account_findings() + _certificate_findings()
                 + _platform_findings(verify_audit))
    accepted = {a.finding: a for a in PostureAcceptance.objects.all()}
    result = []
    for item in all_found:
        acceptance = accepted.get(item.id)
        info = None if acceptance is None else {
            "by": acceptance.accepted_by, "justification": acceptance.justification,
            "at": acceptance.created_at.isoformat()}
        result.append(Finding(item.id, item.severity, item.title, item.detail, item.controls,
                              info))
    return sorted(result, key=lambda f: SEVERITIES.index(f.severity))


def accept(finding_id: str, *, justification: str, origin: Origin) -> PostureAcceptance:
    """Accept a finding with a written justification (audited)."""
    if len(justification.strip()) < 10:
        raise InvalidInput("a justification of at least 10 characters is required")
    current = findings(verify_audit=finding_id == "audit.chain-broken")
    if finding_id not in {f.id for f in current}:
        raise NotFound(f"no current finding {finding_id!r}")
    with transaction.atomic():
        acceptance, _ = PostureAcceptance.objects.update_or_create(
            finding=finding_id, defaults={"justification": justification.strip(),
                                          "accepted_by": origin.actor})
        events.admin_change(origin=origin, action="posture.accept", obj=acceptance,
                            after={"finding": finding_id, "justification": justification})
    return acceptance
