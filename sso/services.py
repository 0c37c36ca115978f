"""Sign a dashboard user in from the identity provider's verified claims.

The provider proves who the person is; Portside still decides whether they may come in:
the claims must map to a dashboard role, the local account must be active and no partner,
and the one login policy (`accounts.services.check_policy`, protocol `web`) must allow it.
Every outcome is audited as a login with method `oidc`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import bans, users
from accounts.models import User
from accounts.services import check_policy
from audit import events
from audit.events import Origin
from mft.errors import LoginRefused
from sso.models import IdentityProviderDevice, SsoIdentity

# Several mapped groups give the most powerful of their roles.
_ROLE_ORDER = (User.Role.ADMIN, User.Role.OPERATOR, User.Role.AUDITOR)
_USERNAME = re.compile(r"[A-Za-z0-9_@-][A-Za-z0-9._@-]{0,149}")
_NO_ROLE = ("Your account at the identity provider holds no Portside role. Ask an "
            "administrator to add you to a group that grants one.")
_NOT_LINKED = ("A local Portside account already has this username and is not linked to "
               "single sign-on. Ask an administrator.")
_NOT_STAFF = "Partner and API accounts cannot sign in through single sign-on."
_DEFAULT_MESSAGE = "Single sign-on was refused. Ask an administrator."


@dataclass(frozen=True)
class Claims:
    """What the identity provider said about the person, after its signature was checked."""

    issuer: str
    subject: str
    username: str
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    groups: tuple[str, ...] = ()
    amr: tuple[str, ...] = ()


@dataclass(frozen=True)
class SignIn:
    """The admitted user and, when the provider asserted a second factor, its device."""

    user: User
    verified_by: IdentityProviderDevice | None


class AnswerRejected(SuspiciousOperation):
    """The identity provider's answer failed a check (forged, replayed or malformed)."""


def reject_answer(problem: str, *, source_ip: str | None) -> AnswerRejected:
    """Audit an identity provider answer that failed a check; return the error to raise."""
    origin = Origin(source_ip=source_ip, protocol="web", extra={"method": "oidc"})
    # No ban count: an attacker who forges callbacks has no password to guess here, and a
    # broken provider must not ban the office's address.
    events.login_failed(origin=origin, username="(single sign-on)",
                        reason=f"identity provider answer rejected: {problem[:200]}")
    return AnswerRejected(problem)


def role_for(groups: tuple[str, ...]) -> str | None:
    """Return the dashboard role the claim values map to (the most powerful), or None."""
    mapped = {settings.OIDC_ROLE_MAP[group] for group in groups
              if group in settings.OIDC_ROLE_MAP}
    return next((str(role) for role in _ROLE_ORDER if role in mapped), None)


def mfa_asserted(amr: tuple[str, ...]) -> bool:
    """Return True when the provider's `amr` names a method in MFT_OIDC_MFA_AMR."""
    return bool(set(amr) & settings.OIDC_MFA_AMR)


def sign_in(claims: Claims, *, source_ip: str | None) -> SignIn:
    """Admit the person the claims describe, or raise LoginRefused (audited either way)."""
    origin = Origin(source_ip=source_ip, protocol="web",
                    extra={"method": "oidc", "amr": list(claims.amr)})
    try:
        user = _admit(claims, origin)
    except LoginRefused as refusal:
        # No ban count: a refusal here follows a successful sign-in at the provider, so it
        # is no guess at a secret.
        events.login_failed(origin=origin, username=claims.username or claims.subject,
                            reason=refusal.reason)
        raise
    # The dashboard writes `login` when the session starts (after local TOTP if needed).
    events.login_first_factor_passed(origin=origin, user=user, method="oidc", step="oidc")
    device = _provider_device(user) if mfa_asserted(claims.amr) else None
    return SignIn(user=user, verified_by=device)


def _admit(claims: Claims, origin: Origin) -> User:
    """Return the provisioned user if every rule allows this sign-in."""
    if bans.active_ban(origin.source_ip):
        raise LoginRefused("address banned", _DEFAULT_MESSAGE)
    role = role_for(claims.groups)
    if role is None:
        raise LoginRefused(f"no dashboard role in the {settings.OIDC_ROLE_CLAIM!r} claim "
                           f"({', '.join(claims.groups) or 'empty'})", _NO_ROLE)
    with transaction.atomic():
        user = _provision(claims, role, origin)
    try:
        check_policy(user, protocol="web", source_ip=origin.source_ip)
    except LoginRefused as refusal:
        raise LoginRefused(refusal.reason, _DEFAULT_MESSAGE) from None
    return user


class _Raced(Exception):
    """A parallel first sign-in of the same person created their account meanwhile."""


def _provision(claims: Claims, role: str, origin: Origin) -> User:
    """Return the linked user brought up to date with the claims, or a new one."""
    # Two tabs or a double click can finish a first sign-in twice at once; the slower one
    # loses the insert race and, on its second pass, finds the account the faster one made.
    for _ in range(2):
        identity = (SsoIdentity.objects.select_for_update()
                    .filter(issuer=claims.issuer, subject=claims.subject).first())
        if identity is not None:
            return _refresh(identity, claims, role, origin)
        try:
            with transaction.atomic():
                return _create(claims, role, origin)
        except _Raced:
            continue
    raise LoginRefused("lost the race to create the account twice", _DEFAULT_MESSAGE)


def _refresh(identity: SsoIdentity, claims: Claims, role: str, origin: Origin) -> User:
    """Bring the linked user up to date with the claims, if they may still sign in."""
    user = User.objects.select_for_update().get(pk=identity.user_id)
    if not user.is_active:
        raise LoginRefused("account disabled", _DEFAULT_MESSAGE)
    if not user.is_dashboard_role or user.partner_id is not None:
        raise LoginRefused("partner or API account", _NOT_STAFF)
    before = _snapshot(user)
    _apply(user, claims, role)
    user.last_login = timezone.now()
    user.save()
    if _snapshot(user) != before:
        events.admin_change(origin=_provider(origin), action="user.update", obj=user,
                            before=before, after=_snapshot(user))
    identity.last_sign_in_at = user.last_login
    identity.save(update_fields=["last_sign_in_at"])
    return user


def _create(claims: Claims, role: str, origin: Origin) -> User:
    """Create a dashboard user for a first sign-in: no usable password, web only."""
    username = _username(claims)
    if User.objects.filter(username__iexact=username).exists():
        if _linked(claims):
            raise _Raced
        raise LoginRefused(f"username {username!r} belongs to a local account", _NOT_LINKED)
    user = User(username=username, allowed_protocols=["web"], last_login=timezone.now())
    _apply(user, claims, role)
    user.set_unusable_password()
    try:
        user.save()
        SsoIdentity.objects.create(user=user, issuer=claims.issuer, subject=claims.subject,
                                   last_sign_in_at=user.last_login)
    except IntegrityError:
        # The caller's savepoint undoes the half-made account; a plain name clash is
        # refused on the next pass by the check above.
        raise _Raced from None
    events.admin_change(origin=_provider(origin), action="user.create", obj=user,
                        after={**_snapshot(user), "sso_issuer": claims.issuer,
                               "sso_subject": claims.subject})
    return user


def _linked(claims: Claims) -> bool:
    """Return True when some account is already linked to this provider identity."""
    return SsoIdentity.objects.filter(issuer=claims.issuer, subject=claims.subject).exists()


def _apply(user: User, claims: Claims, role: str) -> None:
    """Set role and names from the claims; admins reach the Django admin like local ones."""
    user.role = role
    user.is_staff = user.is_superuser = role == User.Role.ADMIN
    user.email = claims.email[:254]
    user.first_name = claims.first_name[:150]
    user.last_name = claims.last_name[:150]


def _snapshot(user: User) -> dict[str, Any]:
    """Return the audited fields of a user, with the names single sign-on keeps current."""
    return {**users.snapshot(user), "first_name": user.first_name,
            "last_name": user.last_name}


def _username(claims: Claims) -> str:
    """Return the claimed username if it is safe, else refuse the sign-in."""
    if not _USERNAME.fullmatch(claims.username):
        raise LoginRefused(f"unusable {settings.OIDC_USERNAME_CLAIM!r} claim "
                           f"{claims.username[:40]!r}", _DEFAULT_MESSAGE)
    return claims.username


def _provider(origin: Origin) -> Origin:
    """Return the origin of changes made on the identity provider's word."""
    return Origin("oidc", None, origin.source_ip, origin.protocol, origin.extra)


def _provider_device(user: User) -> IdentityProviderDevice:
    """Return the user's device standing for the provider's second factor."""
    device, _ = IdentityProviderDevice.objects.get_or_create(
        user=user, defaults={"name": "identity provider", "confirmed": True})
    return device
