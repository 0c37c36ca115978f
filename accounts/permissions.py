"""DRF permission classes: token scopes and roles."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import ApiToken, User

_ROLE_SCOPES = {
    User.Role.ADMIN: {"read", "transfer", "admin"},
    User.Role.OPERATOR: {"read", "transfer"},
    User.Role.AUDITOR: {"read"},
    User.Role.PARTNER: {"read", "transfer"},
    User.Role.API: {"read", "transfer", "admin"},
}


def scopes_of(request: Request) -> set[str]:
    """Return the scopes the request carries: the token's, limited by the owner's role."""
    user = request.user
    role_scopes = _ROLE_SCOPES.get(getattr(user, "role", ""), set())
    if isinstance(request.auth, ApiToken):
        return set(request.auth.scopes) & role_scopes
    return role_scopes


def scope_required(scope: str) -> type[BasePermission]:
    """Return a permission class demanding one scope (admin implies every scope)."""

    class _Scope(BasePermission):
        message = f"this action needs the {scope!r} scope"

        def has_permission(self, request: Request, view: Any) -> bool:
            if not request.user or not request.user.is_authenticated:
                return False
            held = scopes_of(request)
            return scope in held or "admin" in held

    _Scope.__name__ = f"Scope_{scope}"
    return _Scope
