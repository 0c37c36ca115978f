"""Check and normalise what an admin types into endpoints, routes and pulls.

Each function returns the normalised value or raises ValueError with a message fit to show.
"""

from __future__ import annotations

import posixpath
import re
import zoneinfo

from celery.schedules import crontab
from cryptography import x509
from cryptography.hazmat.primitives import serialization

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def host(value: str) -> str:
    """Return a host name or address, refusing empty values, spaces and URL parts."""
    value = value.strip()
    if not value or len(value) > 255:
        raise ValueError("give the server's host name or address")
    if _CONTROL.search(value) or any(c in value for c in " /@?#"):
        raise ValueError("a host is a name or an address, not a URL")
    return value


def fingerprint(value: str) -> str:
    """Return a SHA-256 certificate fingerprint as 64 lowercase hex digits ("" stays "")."""
    clean = value.replace(":", "").replace(" ", "").strip().lower()
    if clean and not _HEX64.fullmatch(clean):
        raise ValueError("a SHA-256 fingerprint is 64 hex digits (colons allowed)")
    return clean


def ca_bundle(value: str) -> str:
    """Return PEM text holding at least one certificate ("" stays "")."""
    if not value.strip():
        return ""
    try:
        certificates = x509.load_pem_x509_certificates(value.encode())
    except ValueError:
        raise ValueError("the CA bundle is not PEM certificates") from None
    if not certificates:
        raise ValueError("the CA bundle holds no certificate")
    return value.strip() + "\n"


def remote_folder(value: str) -> str:
    """Return an absolute, normalised folder path."""
    if not value or _CONTROL.search(value):
        raise ValueError("give an absolute folder path without control characters")
    clean = posixpath.normpath("/" + value.strip().lstrip("/"))
    return "/" if clean in ("//", "/.") else clean


def pattern(value: str) -> str:
    """Return a file name pattern (glob): no folders, no control characters."""
    if not value or "/" in value or _CONTROL.search(value):
        raise ValueError("a file name pattern is a glob like *.csv, without folders")
    return value


def cron(value: str) -> str:
    """Return a five-field cron expression ("" stays ""), refusing what beat cannot run."""
    if not value.strip():
        return ""
    fields = value.split()
    if len(fields) != len(CRON_FIELDS):
        raise ValueError("a cron expression has five fields: minute hour day-of-month "
                         "month day-of-week")
    try:
        crontab(**dict(zip(CRON_FIELDS, fields, strict=True)))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid cron expression: {exc}") from None
    return " ".join(fields)


def cron_fields(value: str) -> dict[str, str]:
    """Return a cron expression as django-celery-beat's CrontabSchedule fields."""
    return dict(zip(CRON_FIELDS, cron(value).split(), strict=True))


def timezone_name(value: str) -> str:
    """Return an IANA time zone name."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


def client_credential(cert_pem: str, key_pem: str) -> tuple[str, str]:
    """Return a client certificate and its unencrypted private key, refusing a mismatch."""
    if not cert_pem.strip() and not key_pem.strip():
        return "", ""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError("give a PEM client certificate and its unencrypted PEM private "
                         "key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if cert.public_key().public_bytes(encoding, public) != key.public_key().public_bytes(
            encoding, public):
        raise ValueError("the private key does not belong to the client certificate")
    return cert_pem.strip() + "\n", key_pem.strip() + "\n"
