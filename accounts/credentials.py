"""Partners' credentials: X.509 client certificates and OpenPGP public keys.

Both are parsed and vetted before they are stored; additions and removals are audited.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import certificates
from accounts.models import ClientCertificate, Partner, PgpKey, User
from audit import events
from audit.events import Origin
from mft.errors import Conflict, InvalidInput
from transfers import pgp

_PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"


def certificate_snapshot(cert: ClientCertificate) -> dict[str, Any]:
    """Return the audited fields of a client certificate."""
    return {
        "partner": cert.partner.name,
        "user": cert.user.username if cert.user else None,
        "fingerprint_sha256": cert.fingerprint_sha256,
        "subject": cert.subject,
        "issuer": cert.issuer,
        "not_after": cert.not_after.isoformat(),
        "is_ca": cert.is_ca,
    }


def _parse_certificate(pem: str) -> certificates.ParsedCertificate:
    """Parse one PEM certificate; refuse private keys, bundles, junk and expired ones."""
    if "PRIVATE KEY" in pem:
        raise InvalidInput("the text holds a private key; upload only the certificate")
    if pem.count(_PEM_CERTIFICATE) != 1:
        raise InvalidInput("upload exactly one PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        parsed = certificates.parse_pem(pem)
    except ValueError as exc:  # malformed extensions surface only when read
        raise InvalidInput(f"the certificate cannot be read: {exc}") from None
    if parsed.not_after <= timezone.now():
        raise InvalidInput(f"the certificate expired on {parsed.not_after.isoformat()}")
    return parsed


def add_certificate(partner: Partner, pem: str, *, user: User | None = None,
                    origin: Origin) -> ClientCertificate:
    """Register a client certificate (or a CA) for a partner, optionally for one user."""
    parsed = _parse_certificate(pem)
    if user is not None and user.partner_id != partner.pk:
        raise InvalidInput(f"user {user.username!r} does not belong to partner {partner.name!r}")
    if user is not None and parsed.is_ca:
        raise InvalidInput("a CA certificate is registered for the whole partner, not a user")
    with transaction.atomic():
        if ClientCertificate.objects.filter(fingerprint_sha256=parsed.fingerprint_sha256).exists():
            raise Conflict("this certificate is already registered")
        try:
            with transaction.atomic():
                cert = ClientCertificate.objects.create(
                    partner=partner, user=user, pem=parsed.pem,
                    fingerprint_sha256=parsed.fingerprint_sha256,
                    subject=parsed.subject[:500], issuer=parsed.issuer[:500],
                    serial=parsed.serial[:80], not_before=parsed.not_before,
                    not_after=parsed.not_after, is_ca=parsed.is_ca)
        except IntegrityError:
            raise Conflict("this certificate is already registered") from None
        events.admin_change(origin=origin, action="certificate.add", obj=cert,
                            after=certificate_snapshot(cert))
    return cert


def remove_certificate(cert: ClientCertificate, *, origin: Origin) -> None:
    """Remove a client certificate; logins presenting it stop working at once."""
    with transaction.atomic():
        events.admin_change(origin=origin, action="certificate.remove", obj=cert,
                            before=certificate_snapshot(cert))
        cert.delete()


def pgp_key_snapshot(key: PgpKey) -> dict[str, Any]:
    """Return the audited fields of a PGP key."""
    return {
        "partner": key.partner.name,
        "fingerprint": key.fingerprint,
        "user_ids": list(key.user_ids),
        "algorithm": key.algorithm,
        "bits": key.bits,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
    }


def add_pgp_key(partner: Partner, armored: str, *, origin: Origin) -> PgpKey:
    """Vet a partner's OpenPGP public key (not expired, revoked, weak or sign-only), store it."""
    try:
        info = pgp.validate_public_key(armored)
    except pgp.PgpError as exc:
        raise InvalidInput(str(exc)) from None
    with transaction.atomic():
        if PgpKey.objects.filter(fingerprint=info.fingerprint).exists():
            raise Conflict(f"the key {info.fingerprint} is already registered")
        try:
            with transaction.atomic():
                key = PgpKey.objects.create(
                    partner=partner, armored=armored, fingerprint=info.fingerprint,
                    user_ids=list(info.user_ids), algorithm=info.algorithm[:40],
                    bits=info.bits or None, expires_at=info.expires_at)
        except IntegrityError:
            raise Conflict(f"the key {info.fingerprint} is already registered") from None
        events.admin_change(origin=origin, action="pgp_key.add", obj=key,
                            after=pgp_key_snapshot(key))
    return key


def remove_pgp_key(key: PgpKey, *, origin: Origin) -> None:
    """Remove a partner's PGP key."""
    with transaction.atomic():
        events.admin_change(origin=origin, action="pgp_key.remove", obj=key,
                            before=pgp_key_snapshot(key))
        key.delete()
