"""The connection sheet: everything a partner needs to connect, ready to send to them."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings

from mft.server_certificate import sha256_fingerprint


@dataclass(frozen=True)
class Sheet:
    """Where and how a partner's user connects."""

    host: str
    explicit_port: int | None
    implicit_port: int | None
    passive_low: int
    passive_high: int
    tls_min_version: str
    fingerprint: str | None  # SHA-256 of the server certificate, colon-separated hex
    public_key_pin: str | None  # curl's --pinnedpubkey value

    @property
    def fingerprint_lower(self) -> str:
        """Return the fingerprint as WinSCP's -certificate switch expects it."""
        return (self.fingerprint or "").lower()


def _public_key_pin(cert_path: Path) -> str:
    """Return `sha256//<base64>` of the certificate's public key, as curl pins it."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def host() -> str:
    """Return the address partners connect to: the masquerade address, else the web host."""
    return settings.MASQUERADE_ADDRESS or urlsplit(settings.PUBLIC_URL).hostname or "localhost"


def sheet() -> Sheet:
    """Return the connection details of this installation's gateway."""
    cert_path = Path(settings.TLS_CERT_FILE)
    readable = cert_path.is_file()
    low, high = settings.PASSIVE_PORTS
    return Sheet(
        host=host(), explicit_port=settings.FTPS_PORT, implicit_port=settings.FTPS_IMPLICIT_PORT,
        passive_low=low, passive_high=high, tls_min_version=settings.TLS_MIN_VERSION,
        fingerprint=sha256_fingerprint(cert_path) if readable else None,
        public_key_pin=_public_key_pin(cert_path) if readable else None)


def server_certificate_pem() -> bytes | None:
    """Return the gateway's certificate (public) as PEM, or None when there is none yet.

    Re-encoded from the parsed certificate, so a file that also holds the private key
    never leaks it.
    """
    path = Path(settings.TLS_CERT_FILE)
    if not path.is_file():
        return None
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.public_bytes(serialization.Encoding.PEM)
