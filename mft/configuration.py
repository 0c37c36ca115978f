"""The running configuration described for people: listeners, TLS, scanner, storage, broker.

Read-only and secret-free: URLs lose their credentials, keys are named only by where they
come from. The dashboard's settings page shows this; changes go through the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection
from django.utils import timezone

_DEFAULT_CIPHERS = "built-in: ECDHE with AES-GCM or ChaCha20-Poly1305"


@dataclass(frozen=True)
class Scanner:
    """Whether clamd answers, its version, and how old its signature database is."""

    status: str  # ok, down, disabled, not_configured
    detail: str
    address: str
    signatures_built: datetime | None = None

    @property
    def signature_age_days(self) -> float | None:
        """Return the signature database's age in days, when clamd tells its date."""
        if self.signatures_built is None:
            return None
        return round((timezone.now() - self.signatures_built).total_seconds() / 86400, 1)


def _without_credentials(url: str) -> str:
    """Return a URL with any user and password removed (shown to people, never secrets)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return f"{parts.scheme}://" if parts.scheme else url
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def scanner() -> Scanner:
    """Return the scanner's state, asking clamd for its version with a short timeout."""
    address = settings.CLAMD_ADDRESS
    if settings.SCAN_MODE == "off":
        return Scanner("disabled", "scanning switched off (MFT_SCAN=off)", address)
    if not address:
        return Scanner("not_configured", "MFT_CLAMD unset: uploads are held", address)
    from monitoring.collectors import signature_date
    from transfers.scanning import ClamdClient, ScannerError

    try:
        version = ClamdClient(address, timeout=3).version()
    except (ScannerError, OSError) as exc:
        return Scanner("down", str(exc)[:200], address)
    return Scanner("ok", version, address, signature_date(version))


def _database() -> dict[str, Any]:
    """Return the database engine and where it is (never its password)."""
    config = settings.DATABASES["default"]
    where = (str(config.get("NAME", "")) if connection.vendor == "sqlite"
             else f"{config.get('HOST') or 'local socket'}:{config.get('PORT') or 5432}/"
                  f"{config.get('NAME', '')}")
    return {"engine": connection.vendor, "where": where}


def describe() -> dict[str, Any]:
    """Return the configuration in sections of label → value, for display."""
    low, high = settings.PASSIVE_PORTS
    return {
        "listeners": {
            "bind address": settings.BIND_ADDRESS,
            "explicit FTPS port (AUTH TLS)": settings.FTPS_PORT or "off",
            "implicit FTPS port": settings.FTPS_IMPLICIT_PORT or "off",
            "passive data ports": f"{low}\u2013{high}",
            "masquerade address": settings.MASQUERADE_ADDRESS or "none (PASV announces the "
                                                                "listener's address)",
            "active mode (PORT/EPRT)": "allowed" if settings.GATEWAY_ACTIVE_MODE else "refused",
            "web address": settings.PUBLIC_URL,
        },
        "tls": {
            "minimum version": settings.TLS_MIN_VERSION,
            "TLS 1.2 ciphers": settings.TLS_CIPHERS or _DEFAULT_CIPHERS,
            "certificate file": str(settings.TLS_CERT_FILE),
            "session reuse on data connections": "required (per-user exemptions audited)",
        },
        "storage": {
            "data folder": str(settings.DATA_DIR),
            "home folders": str(settings.HOMES_DIR),
            "encryption at rest": "AES-256-GCM" if settings.ENCRYPT_AT_REST else "off",
            "master key": "MFT_MASTER_KEY" if settings.MASTER_KEY
            else str(settings.MASTER_KEY_PATH),
            "largest file": f"{settings.MAX_FILE_BYTES} bytes" if settings.MAX_FILE_BYTES
            else "no limit",
        },
        "services": {
            "database": "{engine} ({where})".format(**_database()),
            "broker": _without_credentials(settings.CELERY_BROKER_URL),
        },
    }
