"""Directory users (LDAP / Active Directory), authenticated by django-auth-ldap.

A user not kept locally is looked up in the directory (MFT_LDAP_*, see mft.directory); on
every successful bind their row is created or refreshed from it: role from the first
mapped group they belong to, partner and home from attributes, disabled when in the
disabled group. Their row keeps an unusable password and `source=directory`, so the local
backend never authenticates them. A directory that cannot be asked raises LoginUnavailable
instead of answering "no", so no other backend gets the chance to let the user in.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any

import ldap
from django.conf import settings
from django.dispatch import receiver
from django_auth_ldap.backend import LDAPBackend, ldap_error, populate_user

from accounts import directory_refresh, users
from accounts.models import Partner, User
from audit import events
from audit.events import Origin
from mft.errors import LoginUnavailable

log = logging.getLogger(__name__)

DIRECTORY = Origin(actor="directory", protocol="internal")
# The same names a local user may have: the username also names the home folder.
_USERNAME = re.compile(r"[A-Za-z0-9_@-][A-Za-z0-9._@-]{0,149}")
_PROTOCOLS = {User.Role.PARTNER: ["ftps"], User.Role.API: ["https"]}
_STAFF_PROTOCOLS = ["web", "https"]


class DirectoryBackend(LDAPBackend):
    """django-auth-ldap's backend, limited to users that are not kept locally."""

    default_settings: dict[str, Any] = {
        "ROLE_GROUPS": [],
        "DISABLED_GROUP": None,
        "PARTNER_ATTRIBUTE": None,
        "HOME_ATTRIBUTE": None,
    }

    def authenticate(self, request: Any, username: str | None = None,
                     password: str | None = None, **kwargs: Any) -> User | None:
        """Return the directory user for a good password; None for local or unknown names."""
        if not username or not _USERNAME.fullmatch(username) or _is_local(username):
            return None
        user: User | None = super().authenticate(request, username=username,
                                                 password=password, **kwargs)
        return user

    def get_or_build_user(self, username: str, ldap_user: Any) -> tuple[User, bool]:
        """Return the directory user's row; never take over a local user of the same name."""
        user, built = super().get_or_build_user(username, ldap_user)
        if not built and user.source != User.Source.DIRECTORY:
            raise ldap_user.AuthenticationFailed("a local user has this name")
        user._directory_before = {} if built else users.snapshot(user)
        return user, built

    def authenticate_ldap_user(self, ldap_user: Any, password: str) -> User | None:
        """Bind as the user, refresh their row from the directory, and audit what changed."""
        user: User | None = super().authenticate_ldap_user(ldap_user, password)
        if user is not None:
            _audit_sync(user)
            directory_refresh.mark_read(user.pk)
        return user


def reread(user: User) -> User:
    """Read a directory user's entry again (service account) and apply it to their row; a
    user whose entry is gone from the directory is disabled."""
    fresh: User | None = DirectoryBackend().populate_user(user.username)
    if fresh is not None:
        _audit_sync(fresh)
        return fresh
    if user.is_active:
        before = users.snapshot(user)
        User.objects.filter(pk=user.pk).update(is_active=False)
        user.is_active = False
        log.warning("directory user %s is gone from the directory; disabled", user.username)
        events.admin_change(origin=DIRECTORY, action="user.update", obj=user, before=before,
                            after=users.snapshot(user))
    return user


def _is_local(username: str) -> bool:
    """Return True when a local (not directory) user has this name."""
    return (User.objects.filter(username__iexact=username)
            .exclude(source=User.Source.DIRECTORY).exists())


def _audit_sync(user: User) -> None:
    """Record the creation of a directory user, or a change the directory made to one."""
    before = getattr(user, "_directory_before", {})
    after = users.snapshot(user)
    if before != after:
        events.admin_change(origin=DIRECTORY, action="user.update" if before else "user.create",
                            obj=user, before=before, after=after)


@receiver(ldap_error, sender=DirectoryBackend)
def _directory_unavailable(sender: Any, context: str, exception: Exception,
                           **kwargs: Any) -> None:
    """Turn any failure to ask the directory into LoginUnavailable (never a quiet None)."""
    raise LoginUnavailable("directory unavailable") from exception


@receiver(populate_user, sender=DirectoryBackend)
def _apply_directory_entry(sender: Any, user: User, ldap_user: Any, **kwargs: Any) -> None:
    """Set role, partner, home and state from the directory entry, before the row is saved."""
    conf = ldap_user.settings
    groups = {_normal_dn(dn) for dn in ldap_user.group_dns}
    role = next((r for r, dn in conf.ROLE_GROUPS if _normal_dn(dn) in groups), None)
    user.source = User.Source.DIRECTORY
    # The password lives in the directory: a local one (set by a reset) must never work.
    user.set_unusable_password()
    user.must_change_password = False
    if role is not None:
        _apply_role(user, User.Role(role))
        user.partner = _partner(ldap_user, conf.PARTNER_ATTRIBUTE)
        user.home_dir = str(_home(user.username, ldap_user, conf.HOME_ATTRIBUTE))
    refusal = _refusal(user, role, groups, conf.DISABLED_GROUP)
    user.is_active = refusal is None
    if refusal:
        log.warning("directory user %s is disabled: %s", user.username, refusal)


def _refusal(user: User, role: str | None, groups: set[str],
             disabled_group: str | None) -> str | None:
    """Return why a directory entry may not log in, or None when it may."""
    if role is None:
        return "in no group of MFT_LDAP_ROLE_GROUPS"
    if disabled_group and _normal_dn(disabled_group) in groups:
        return "in the disabled group"
    if user.role == User.Role.PARTNER and user.partner is None:
        return "a partner user without a known partner (MFT_LDAP_PARTNER_ATTRIBUTE)"
    return None


def _apply_role(user: User, role: User.Role) -> None:
    """Give the user a role, with that role's protocols when the role changes."""
    if user.pk is None or user.role != role:
        user.allowed_protocols = _PROTOCOLS.get(role, _STAFF_PROTOCOLS)
    user.role = role
    user.is_staff = user.is_superuser = role == User.Role.ADMIN


def _first_value(ldap_user: Any, attribute: str | None) -> str | None:
    """Return the first value of an attribute of the user's entry, if any."""
    if not attribute:
        return None
    values = (ldap_user.attrs or {}).get(attribute) or [""]
    return str(values[0]).strip() or None


def _partner(ldap_user: Any, attribute: str | None) -> Partner | None:
    """Return the existing partner the entry's attribute names (directories never add one)."""
    name = _first_value(ldap_user, attribute)
    return Partner.objects.filter(name=name).first() if name else None


def _home(username: str, ldap_user: Any, attribute: str | None) -> Path:
    """Return the user's home: the attribute's folder under MFT_HOMES_DIR, else the default."""
    homes = Path(settings.HOMES_DIR)
    relative = _first_value(ldap_user, attribute)
    if relative:
        parts = PurePosixPath(relative).parts
        if not PurePosixPath(relative).is_absolute() and ".." not in parts:
            return homes.joinpath(*parts)
        log.warning("directory home %r of %s is not a folder under MFT_HOMES_DIR",
                    relative, username)
    return homes / username


def _normal_dn(dn: str) -> str:
    """Return a DN in one spelling (case and spacing), for comparing group DNs."""
    return str(ldap.dn.dn2str(ldap.dn.str2dn(dn))).lower()
