"""Put the interim Django admin behind the dashboard's login (password + TOTP)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponseRedirect


def _login(request: HttpRequest, extra_context: Any = None) -> HttpResponseRedirect:
    """Send admin logins to the dashboard's login, which applies the whole login policy."""
    target = request.GET.get("next") or "/admin/"
    return HttpResponseRedirect("/login/?" + urlencode({"next": target}))


def _has_permission(request: HttpRequest) -> bool:
    """Allow active staff whose session passed the second factor when their role needs it."""
    from accounts import mfa

    user = request.user
    if not (user.is_active and user.is_staff):
        return False
    return not mfa.required(user) or bool(getattr(user, "is_verified", lambda: False)())  # type: ignore[arg-type]


def secure(site: AdminSite) -> None:
    """Route the admin site's login and permission check through ours."""
    site.login = _login  # type: ignore[method-assign]
    site.has_permission = _has_permission  # type: ignore[method-assign]
