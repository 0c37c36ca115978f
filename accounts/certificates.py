"""Parse client certificates and match a presented one against a partner's registrations."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from django.utils import timezone

from mft.errors import InvalidInput


@dataclass(frozen=True)
class ParsedCertificate:
    """The fields Portside keeps about a certificate."""

    pem: str
    fingerprint_sha256: str
    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    is_ca: bool


def fingerprint(der: bytes) -> str:
    """Return the lowercase hex SHA-256 fingerprint of a DER certificate."""
    return hashlib.sha256(der).hexdigest()


def parse_pem(pem: str | bytes) -> ParsedCertificate:
    """Parse one PEM certificate, refusing anything that is not a single valid certificate."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise InvalidInput(f"not a PEM X.509 certificate: {exc}") from None
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = bool(basic.ca)
    except x509.ExtensionNotFound:
        is_ca = False
    der = cert.public_bytes(serialization.Encoding.DER)
    return ParsedCertificate(
        pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        fingerprint_sha256=fingerprint(der),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_ca=is_ca,
    )


def is_current(not_before: datetime, not_after: datetime) -> bool:
    """Return True when now lies inside the validity period."""
    now = timezone.now()
    return not_before <= now <= not_after


def issued_by(der: bytes, ca_pem: str) -> bool:
    """Return True when the DER certificate was signed by the CA certificate given."""
    cert = x509.load_der_x509_certificate(der)
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def validity_of(der: bytes) -> tuple[datetime, datetime]:
    """Return the presented certificate's own validity period."""
    cert = x509.load_der_x509_certificate(der)
    return cert.not_valid_before_utc, cert.not_valid_after_utc
