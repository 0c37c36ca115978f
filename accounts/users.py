"""User administration: create, change, enable, disable and reset passwords.

Every change is audited with the values before and after (never a password or its hash).
Passwords given or generated are validated by Django's password validators; a generated
one is returned once and stored only as a hash.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import networks, passwords, services
from accounts.models import PERMISSION_WORDS, PROTOCOLS, Partner, User
from audit import events
from audit.events import Origin
from mft.errors import Conflict, InvalidInput
from sso.models import SsoIdentity

# Admins are made by bootstrap and `create_admin` only: an API token, however privileged,
# cannot mint a superuser.
CREATABLE_ROLES = (User.Role.PARTNER, User.Role.API, User.Role.OPERATOR, User.Role.AUDITOR)
EDITABLE = ("email", "quota_bytes", "quota_files", "allowed_protocols", "login_method",
            "permissions", "allowed_ips", "expires_at", "max_sessions", "ftps_mfa_required",
            "upload_bytes_per_second", "download_bytes_per_second")
_DEFAULT_PROTOCOLS = {
    User.Role.PARTNER: ["ftps"],
    User.Role.API: ["https"],
    User.Role.OPERATOR: ["web", "https"],
    User.Role.AUDITOR: ["web", "https"],
}
_USERNAME_CHARS = set(string.ascii_letters + string.digits + "._-@")


def snapshot(user: User) -> dict[str, Any]:
    """Return the audited fields of a user."""
    return {
        "username": user.username,
        "role": user.role,
        "partner": user.partner.name if user.partner else None,
        "home_dir": user.home_dir,
        "is_active": user.is_active,
        "email": user.email,
        "quota_bytes": user.quota_bytes,
        "quota_files": user.quota_files,
        "allowed_protocols": list(user.allowed_protocols or []),
        "login_method": user.login_method,
        "permissions": list(user.permissions or []),
        "allowed_ips": list(user.allowed_ips or []),
        "expires_at": user.expires_at.isoformat() if user.expires_at else None,
        "max_sessions": user.max_sessions,
        "ftps_mfa_required": user.ftps_mfa_required,
        "upload_bytes_per_second": user.upload_bytes_per_second,
        "download_bytes_per_second": user.download_bytes_per_second,
    }


def _check_username(username: str) -> None:
    """Refuse usernames that are empty, too long or unsafe as a folder name."""
    if not username or len(username) > 150 or not set(username) <= _USERNAME_CHARS:
        raise InvalidInput("username must be 1-150 characters of letters, digits, . _ - @")
    if username.startswith("."):
        raise InvalidInput("username must not start with a dot")


def _check_words(label: str, values: list[str], allowed: tuple[str, ...]) -> list[str]:
    """Return the values deduplicated in the allowed order, refusing unknown ones."""
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise InvalidInput(f"{label} must be among {', '.join(allowed)}; got {unknown}")
    return [word for word in allowed if word in values]


def _apply(user: User, changes: dict[str, Any]) -> None:
    """Set editable fields after checking them."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise InvalidInput(f"user fields cannot be changed here: {', '.join(unknown)}")
    for label in ("quota_bytes", "quota_files", "max_sessions", "upload_bytes_per_second",
                  "download_bytes_per_second"):
        value = changes.get(label)
        if value is not None and value < 0:
            raise InvalidInput(f"{label} must not be negative")
    if "allowed_protocols" in changes:
        changes["allowed_protocols"] = _check_words("allowed protocols",
                                                    changes["allowed_protocols"], PROTOCOLS)
    if "permissions" in changes:
        changes["permissions"] = _check_words("permissions", changes["permissions"],
                                              PERMISSION_WORDS)
    if "allowed_ips" in changes:
        changes["allowed_ips"] = networks.normalize_networks(changes["allowed_ips"])
    if changes.get("login_method", User.LoginMethod.PASSWORD) not in User.LoginMethod.values:
        raise InvalidInput(f"login method must be one of {', '.join(User.LoginMethod.values)}")
    for name, value in changes.items():
        setattr(user, name, value)


def _set_password(user: User, password: str) -> None:
    """Validate and set a password, recording when it changed."""
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages)) from None
    user.set_password(password)
    user.password_changed_at = timezone.now()


def _check_role(role: str, partner: Partner | None) -> None:
    """Refuse roles the API may not create, and partner links that do not fit the role."""
    if role not in CREATABLE_ROLES:
        raise InvalidInput(f"role must be one of {', '.join(CREATABLE_ROLES)}")
    if role == User.Role.PARTNER and partner is None:
        raise InvalidInput("a partner user needs a partner")
    if role in (User.Role.OPERATOR, User.Role.AUDITOR) and partner is not None:
        raise InvalidInput(f"an {role} belongs to no partner")


@dataclass(frozen=True)
class NewUser:
    """A created user and, when one was generated, the password (shown once)."""

    user: User
    password: str | None


def create_user(
    username: str,
    *,
    role: str,
    partner: Partner | None = None,
    password: str | None = None,
    generate_password: bool = False,
    origin: Origin,
    **fields: Any,
) -> NewUser:
    """Create a user with a given password, a generated one, or none (certificate or token
    logins), and the editable fields given; partner users get a home folder."""
    _check_username(username)
    _check_role(role, partner)
    if password is not None and generate_password:
        raise InvalidInput("give a password or ask for a generated one, not both")
    user = User(username=username, role=role, partner=partner)
    user.allowed_protocols = list(_DEFAULT_PROTOCOLS[User.Role(role)])
    if role == User.Role.PARTNER:
        user.home_dir = str(services.default_home(username))
    _apply(user, fields)
    secret = services.generate_password() if generate_password else password
    if secret is not None:
        _set_password(user, secret)
        # Whoever generated it saw it: a person signing in to the dashboard picks their own.
        user.must_change_password = generate_password and user.is_dashboard_role
    else:
        user.set_unusable_password()
    with transaction.atomic():
        if User.objects.filter(username__iexact=username).exists():
            raise Conflict(f"user {username!r} already exists")
        try:
            with transaction.atomic():
                user.save()
        except IntegrityError:
            raise Conflict(f"user {username!r} already exists") from None
        if user.home_dir:
            Path(user.home_dir).mkdir(parents=True, exist_ok=True)
        events.admin_change(origin=origin, action="user.create", obj=user,
                            after=snapshot(user))
    return NewUser(user=user, password=secret if generate_password else None)


def _change(user: User, action: str, origin: Origin, work: Any) -> User:
    """Lock the user, run a change on it, save and audit before and after."""
    with transaction.atomic():
        # No select_related: PostgreSQL refuses FOR UPDATE on the nullable side of a join.
        locked = User.objects.select_for_update().get(pk=user.pk)
        before = snapshot(locked)
        work(locked)
        locked.save()
        events.admin_change(origin=origin, action=action, obj=locked, before=before,
                            after=snapshot(locked))
    return locked


def update_user(user: User, *, origin: Origin, **changes: Any) -> User:
    """Change a user's quota, protocols, login method, FTPS second factor, permissions,
    allow-list, expiry."""
    return _change(user, "user.update", origin, lambda locked: _apply(locked, changes))


def set_active(user: User, active: bool, *, origin: Origin) -> User:
    """Enable or disable a user; a disabled user's logins and tokens are refused."""
    if active == user.is_active:
        raise Conflict(f"user {user.username!r} is already {'enabled' if active else 'disabled'}")
    if not active and origin.actor_id == user.pk:
        raise Conflict("you cannot disable your own account")

    def work(locked: User) -> None:
        locked.is_active = active

    return _change(user, "user.enable" if active else "user.disable", origin, work)


def password_kept_elsewhere(user: User) -> str | None:
    """Return who checks the user's password when it is not Portside (directory or SSO)."""
    if user.source == User.Source.DIRECTORY:
        return "the directory"
    if SsoIdentity.objects.filter(user_id=user.pk).exists():
        return "the single sign-on provider"
    return None


def reset_password(user: User, *, origin: Origin) -> tuple[User, str]:
    """Give a user a new generated password (history kept, audited); return it, shown once."""
    keeper = password_kept_elsewhere(user)
    if keeper is not None:
        # A local password would be a second way in beside the directory or the provider.
        raise Conflict(f"{user.username!r} signs in through {keeper}; reset the password "
                       f"there, not in Portside")
    secret = services.generate_password()
    passwords.change_password(user, secret, origin=origin, generated=True)
    user.refresh_from_db()
    return user, secret
