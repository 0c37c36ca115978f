"""Who may do what through the API: token scopes, roles and partner limits, in one place.

- A request carries scopes: its token's, cut down to what the owner's role allows (a
  session carries the role's). `admin` implies every other scope.
- A caller is *partner-limited* when it acts for one trading partner (a partner user, or an
  API client attached to a partner): it sees and touches only that partner's objects, and
  install-wide resources (partners, bans, the audit log) are closed to it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from accounts.models import ApiToken, User
from mft.errors import PermissionDenied

_ROLE_SCOPES: dict[str, set[str]] = {
    User.Role.ADMIN: {"read", "transfer", "admin"},
    User.Role.OPERATOR: {"read", "transfer"},
    User.Role.AUDITOR: {"read"},
    User.Role.PARTNER: {"read", "transfer"},
    User.Role.API: {"read", "transfer", "admin"},
}
ALL_ACTIONS = "*"

M = TypeVar("M", bound=Model)


def scopes_of(request: Request) -> set[str]:
    """Return the scopes the request carries: the token's, limited by the owner's role."""
    role_scopes = _ROLE_SCOPES.get(str(getattr(request.user, "role", "")), set())
    if isinstance(request.auth, ApiToken):
        return set(request.auth.scopes) & role_scopes
    return role_scopes


def holds(request: Request, scope: str) -> bool:
    """Return True when the request carries the scope (admin implies every scope)."""
    held = scopes_of(request)
    return scope in held or "admin" in held


def is_partner_limited(request: Request) -> bool:
    """Return True when the caller acts for one trading partner only."""
    user = request.user
    role = getattr(user, "role", None)
    return role == User.Role.PARTNER or (role == User.Role.API
                                         and getattr(user, "partner_id", None) is not None)


def limit_to_partner(queryset: QuerySet[M], request: Request,
                     lookup: str = "partner_id") -> QuerySet[M]:
    """Return the rows a caller may see: all, or its partner's when it is partner-limited.

    `lookup` leads from the row to a partner id ("pk" for partners themselves).
    """
    if not is_partner_limited(request):
        return queryset
    partner_id = getattr(request.user, "partner_id", None)
    if partner_id is None:
        return queryset.none()
    return queryset.filter(**{lookup: partner_id})


def require_own_partner(request: Request, partner_id: int | None) -> None:
    """Refuse a partner-limited caller naming another partner (or none)."""
    if is_partner_limited(request) and partner_id != getattr(request.user, "partner_id", None):
        raise PermissionDenied("this token may only act for its own partner")


def require_admin_unless_own(request: Request, owner_id: int | None) -> None:
    """Refuse to act on another user's object without the admin scope."""
    if owner_id != request.user.pk and not holds(request, "admin"):
        raise PermissionDenied("only the admin scope may act on another user's objects")


def require_may_manage(request: Request, target: User) -> None:
    """Refuse changing an administrator, or acting as one, unless the caller is one: an API
    client's admin scope does not reach the people who administer the install."""
    if target.role == User.Role.ADMIN and getattr(request.user, "role", None) != User.Role.ADMIN:
        raise PermissionDenied("only an administrator may manage an administrator's account")


class ActionScope(BasePermission):
    """Demand the scope a view names for the action, and refuse install-wide actions to
    partner-limited callers.

    Views name `action_scopes` (action → scope); unnamed actions need `read` for safe
    methods and `admin` otherwise. `install_wide_actions` lists actions closed to
    partner-limited callers ("*" for all of the view's actions).
    """

    message = "this action needs a scope the token does not carry"

    def has_permission(self, request: Request, view: Any) -> bool:
        """Return True when the caller holds the scope the action needs."""
        if not request.user or not request.user.is_authenticated:
            return False
        action = getattr(view, "action", None) or (request.method or "").lower()
        needed = getattr(view, "action_scopes", {}).get(action)
        needed = needed or ("read" if request.method in SAFE_METHODS else "admin")
        if not holds(request, needed):
            self.message = f"this action needs the {needed!r} scope"
            return False
        wide = getattr(view, "install_wide_actions", ())
        if (ALL_ACTIONS in wide or action in wide) and is_partner_limited(request):
            self.message = "a partner-scoped caller cannot use this resource"
            return False
        return True


def scope_required(scope: str) -> type[BasePermission]:
    """Return a permission class demanding one scope (admin implies every scope)."""

    class _Scope(BasePermission):
        message = f"this action needs the {scope!r} scope"

        def has_permission(self, request: Request, view: Any) -> bool:
            if not request.user or not request.user.is_authenticated:
                return False
            return holds(request, scope)

    _Scope.__name__ = f"Scope_{scope}"
    return _Scope
