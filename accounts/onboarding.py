"""Onboard a trading partner in one step: the partner, its first user, and credentials.

All or nothing: a certificate or key that does not pass leaves no partner behind. Each
part is made by its own service (and audited there).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from accounts import credentials, partners, users
from accounts.models import ClientCertificate, Partner, PgpKey, User
from audit.events import Origin
from mft.errors import InvalidInput

_CERTIFICATE_METHODS = (User.LoginMethod.CERTIFICATE, User.LoginMethod.PASSWORD_AND_CERTIFICATE,
                        User.LoginMethod.PASSWORD_OR_CERTIFICATE)


@dataclass(frozen=True)
class NewPartner:
    """What onboarding made; the generated password is here once and stored only hashed."""

    partner: Partner
    user: User
    password: str
    certificate: ClientCertificate | None
    pgp_key: PgpKey | None


@dataclass(frozen=True)
class PartnerDetails:
    """The partner organisation's editable fields."""

    name: str
    contact_name: str = ""
    contact_email: str = ""
    contact_phone: str = ""
    notes: str = ""


@dataclass(frozen=True)
class FirstUser:
    """The partner's first login and what it may hold and present."""

    username: str
    login_method: str = User.LoginMethod.PASSWORD
    quota_bytes: int | None = None
    quota_files: int | None = None
    certificate_pem: str = ""
    pgp_key: str = ""


def onboard_partner(details: PartnerDetails, first: FirstUser, *, origin: Origin) -> NewPartner:
    """Create the partner, its first user with a generated password, and its credentials."""
    if first.login_method in _CERTIFICATE_METHODS and not first.certificate_pem.strip():
        raise InvalidInput(f"login method {first.login_method} needs a client certificate")
    with transaction.atomic():
        partner = partners.create_partner(
            origin=origin, name=details.name, contact_name=details.contact_name,
            contact_email=details.contact_email, contact_phone=details.contact_phone,
            notes=details.notes)
        made = users.create_user(
            first.username, role=User.Role.PARTNER, partner=partner, generate_password=True,
            origin=origin, login_method=first.login_method, quota_bytes=first.quota_bytes,
            quota_files=first.quota_files)
        certificate = (credentials.add_certificate(partner, first.certificate_pem,
                                                   user=made.user, origin=origin)
                       if first.certificate_pem.strip() else None)
        key = (credentials.add_pgp_key(partner, first.pgp_key, origin=origin)
               if first.pgp_key.strip() else None)
    assert made.password is not None  # generate_password=True always returns one
    return NewPartner(partner, made.user, made.password, certificate, key)
