"""API tokens: created once, stored as SHA-256 digests, checked on every request."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts import directory_refresh, networks, services
from accounts.models import ApiToken, User
from audit import events
from audit.events import Origin
from mft.errors import Conflict, InvalidInput, LoginRefused

TOKEN_PREFIX = "pst_"
SCOPES = tuple(ApiToken.Scope.values)
# last_used_at feeds the tokens page and the inactivity sweep (which counts days); writing it
# on every request would put each API call in a write transaction.
LAST_USED_PRECISION = timedelta(minutes=1)


def _digest(secret: str) -> str:
    """Return the stored form of a token.

    A token carries 256 random bits, so a plain SHA-256 is enough: there is nothing to
    brute-force, and the lookup must be fast on every request.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewToken:
    """A created token and its secret, which is shown once and never stored."""

    token: ApiToken
    secret: str


def create_api_token(
    user: User,
    *,
    scopes: list[str],
    name: str = "",
    expires_at: datetime | None = None,
    allowed_ips: list[str] | None = None,
    origin: Origin = events.SYSTEM,
) -> NewToken:
    """Create a token for a user with the given scopes."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise InvalidInput(f"scopes must be among {', '.join(SCOPES)}; got {scopes}")
    if "admin" in scopes and user.role not in (User.Role.ADMIN, User.Role.API):
        raise InvalidInput("only admin and API-client accounts may hold the admin scope")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expiry must be in the future")
    allowed_ips = networks.normalize_networks(allowed_ips or [])
    body = secrets.token_urlsafe(32)
    secret = f"{TOKEN_PREFIX}{body}"
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=body[:8], digest=_digest(secret),
            scopes=sorted(set(scopes)), expires_at=expires_at, allowed_ips=allowed_ips,
        )
        events.admin_change(origin=origin, action="token.create", obj=token,
                            after={"user": user.username, "name": token.name,
                                   "scopes": token.scopes, "allowed_ips": token.allowed_ips,
                                   "expires_at": expires_at.isoformat() if expires_at
                                   else None})
    return NewToken(token=token, secret=secret)


def authenticate_token(secret: str, *, source_ip: str | None) -> ApiToken:
    """Return the live token for a secret, applying the owner's login policy."""
    token = (
        ApiToken.objects.select_related("user", "user__partner")
        .filter(digest=_digest(secret)).first()
    )
    if token is None:
        raise LoginRefused("unknown API token")
    if token.revoked_at is not None:
        raise LoginRefused("API token revoked")
    if token.expires_at is not None and token.expires_at <= timezone.now():
        raise LoginRefused("API token expired")
    if token.allowed_ips and not services.address_allowed(source_ip, token.allowed_ips):
        raise LoginRefused(f"address {source_ip} not in the token's allow-list")
    # A directory user disabled there since their last login is refused within
    # MFT_LDAP_RECHECK_SECONDS; a directory that cannot be asked is a temporary failure.
    token.user = directory_refresh.current(token.user)
    if not token.user.is_active:
        directory = token.user.source == User.Source.DIRECTORY
        raise LoginRefused("account disabled in the directory" if directory
                           else "account disabled")
    services.check_policy(token.user, protocol="https", source_ip=source_ip)
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def token_snapshot(token: ApiToken) -> dict[str, Any]:
    """Return the audited fields of a token (never its secret or digest)."""
    return {"user": token.user.username, "name": token.name, "prefix": token.prefix,
            "scopes": list(token.scopes), "allowed_ips": list(token.allowed_ips),
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
            "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None}


def revoke(token: ApiToken, *, origin: Origin) -> None:
    """Revoke a token; it stops working at once."""
    with transaction.atomic():
        # Two admins revoking at once: the second one sees the first's revocation.
        locked = ApiToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked_at is not None:
            raise Conflict("token already revoked")
        before = token_snapshot(locked)
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        events.admin_change(origin=origin, action="token.revoke", obj=locked, before=before,
                            after=token_snapshot(locked))
    token.revoked_at = locked.revoked_at
