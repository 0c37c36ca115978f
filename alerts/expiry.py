"""Announce certificates and PGP keys nearing expiry, once per threshold.

Tracked: our server certificate, partners' client certificates, partners' PGP keys and the
platform's own PGP keys. Thresholds are `MFT_EXPIRY_ALERT_DAYS` (e.g. 30,14,7,1) plus 0
for "expired". An `ExpiryNotice` row remembers the lowest threshold announced per
credential, so an hourly check announces each threshold once; a renewal (another expiry)
resets it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gnupg
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import expiring
from accounts.models import PgpKey
from alerts.models import ExpiryNotice
from audit import events
from notifications import events as notices

Kind = ExpiryNotice.Kind
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credential:
    """A certificate or key that expires, and whose it is (None: the platform's)."""

    kind: str
    fingerprint: str
    label: str
    expires_at: datetime
    partner: Any = None


def threshold_for(expires_at: datetime, now: datetime, thresholds: list[int]) -> int | None:
    """Return the lowest threshold (days) the expiry has crossed, 0 when expired, or None."""
    left = expires_at - now
    if left <= timedelta(0):
        return 0
    crossed = [days for days in thresholds if left <= timedelta(days=days)]
    return min(crossed) if crossed else None


def server_certificate() -> list[Credential]:
    """Return the gateway's certificate, when one is installed and readable."""
    try:
        cert = x509.load_pem_x509_certificate(Path(settings.TLS_CERT_FILE).read_bytes())
    except (OSError, ValueError):
        return []
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    return [Credential(Kind.SERVER_CERTIFICATE, fingerprint, cert.subject.rfc4514_string(),
                       cert.not_valid_after_utc)]


def partner_credentials(days: int) -> list[Credential]:
    """Return partners' client certificates and PGP keys expiring within `days` days."""
    found = expiring.within(days, limit=10_000)
    certificates = [Credential(Kind.CLIENT_CERTIFICATE, c.fingerprint_sha256, c.subject,
                               c.not_after, c.partner) for c in found.certificates]
    keys = [Credential(Kind.PARTNER_PGP_KEY, k.fingerprint, ", ".join(k.user_ids) or k.fingerprint,
                       k.expires_at, k.partner) for k in found.pgp_keys if k.expires_at]
    return certificates + keys


def platform_pgp_keys() -> list[Credential]:
    """Return the platform's own PGP keys that expire (keys in our keyring, not partners')."""
    home = Path(settings.PGP_HOME)
    if not home.is_dir():
        return []
    # A public listing needs no gpg-agent; partners' keys are in the keyring too, left out.
    try:
        gpg = gnupg.GPG(gnupghome=str(home),
                        options=["--no-autostart", "--no-auto-key-retrieve"])
        listing = gpg.list_keys()
    except (OSError, ValueError) as exc:
        # The other credentials must still be checked when gpg is missing or broken.
        log.warning("cannot list the platform's PGP keys in %s: %s", home, exc)
        return []
    partners = set(PgpKey.objects.values_list("fingerprint", flat=True))
    found = []
    for key in listing:
        if key["fingerprint"] in partners or not str(key.get("expires", "")).isdigit():
            continue
        expires = datetime.fromtimestamp(int(key["expires"]), tz=UTC)
        found.append(Credential(Kind.PLATFORM_PGP_KEY, key["fingerprint"],
                                ", ".join(key.get("uids", [])) or key["fingerprint"], expires))
    return found


def tracked() -> list[Credential]:
    """Return every credential close enough to expiry to matter."""
    horizon = max(settings.EXPIRY_ALERT_DAYS)
    return server_certificate() + partner_credentials(horizon) + platform_pgp_keys()


def check(now: datetime | None = None) -> int:
    """Announce every threshold newly crossed; forget renewed or removed ones. Return count."""
    now = now or timezone.now()
    credentials = tracked()
    sent = sum(1 for credential in credentials if announce_if_due(credential, now))
    _forget_others({(c.kind, c.fingerprint) for c in credentials})
    return sent


def announce_if_due(credential: Credential, now: datetime) -> bool:
    """Announce a credential's crossed threshold unless already told; True if announced."""
    threshold = threshold_for(credential.expires_at, now, settings.EXPIRY_ALERT_DAYS)
    with transaction.atomic():
        notice = (ExpiryNotice.objects.select_for_update()
                  .filter(kind=credential.kind, fingerprint=credential.fingerprint).first())
        if notice is not None and notice.expires_at != credential.expires_at:
            notice.delete()  # renewed in place (a PGP key's expiry extended)
            notice = None
        if threshold is None or (notice is not None and notice.threshold_days <= threshold):
            return False
        ExpiryNotice.objects.update_or_create(
            kind=credential.kind, fingerprint=credential.fingerprint,
            defaults={"label": credential.label[:500], "expires_at": credential.expires_at,
                      "threshold_days": threshold, "announced_at": now})
        _announce(credential, threshold)
    return True


def _announce(credential: Credential, threshold: int) -> None:
    """Notify subscribers and audit one crossed threshold."""
    notices.certificate_expiring(kind=credential.kind, label=credential.label,
                                 fingerprint=credential.fingerprint,
                                 expires_at=credential.expires_at, threshold_days=threshold,
                                 partner=credential.partner)
    events.alert_raised(alert="certificate.expiring", object_type=credential.kind,
                        details={"fingerprint": credential.fingerprint,
                                 "label": credential.label[:200],
                                 "expires_at": credential.expires_at.isoformat(),
                                 "threshold_days": threshold})


def _forget_others(current: set[tuple[str, str]]) -> None:
    """Drop notices of credentials no longer tracked (replaced, deleted, or renewed)."""
    for notice in ExpiryNotice.objects.all():
        if (notice.kind, notice.fingerprint) not in current:
            notice.delete()
