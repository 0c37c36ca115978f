"""Partner credentials that expire soon (or already have): client certificates, PGP keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from accounts.models import ClientCertificate, PgpKey

WARNING_DAYS = 30


@dataclass(frozen=True)
class Expiring:
    """Certificates and keys whose expiry falls before the horizon, soonest first."""

    certificates: list[ClientCertificate]
    pgp_keys: list[PgpKey]

    def __len__(self) -> int:
        return len(self.certificates) + len(self.pgp_keys)


def within(days: int = WARNING_DAYS, *, limit: int = 100) -> Expiring:
    """Return credentials expiring within `days` days, expired ones included."""
    horizon = timezone.now() + timedelta(days=days)
    certificates = (ClientCertificate.objects.filter(not_after__lte=horizon)
                    .select_related("partner", "user").order_by("not_after")[:limit])
    keys = (PgpKey.objects.filter(expires_at__isnull=False, expires_at__lte=horizon)
            .select_related("partner").order_by("expires_at")[:limit])
    return Expiring(list(certificates), list(keys))
