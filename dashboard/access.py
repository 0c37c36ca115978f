"""Who may see and do what in the dashboard, checked by one decorator on every view.

Capabilities are words; each role holds a set of them. Admins hold every capability,
operators run daily work (files, review, re-sending deliveries; partners, users,
credentials and delivery configuration read-only), auditors read (audit log, file
metadata, users, credentials, tokens, deliveries, settings) and change nothing. Partner and
API accounts have no dashboard role at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from accounts import mfa, passwords
from accounts.models import User
from audit.events import Origin
from mft import client_address

CAPABILITIES: dict[str, frozenset[str]] = {
    User.Role.ADMIN: frozenset({
        "view_overview", "view_files", "review_files", "view_partners", "manage_partners",
        "view_audit", "verify_audit", "manage_bans", "view_users", "manage_users",
        "view_credentials", "manage_credentials", "view_deliveries", "manage_deliveries",
        "resend_deliveries", "view_tokens", "manage_tokens", "view_settings",
        "view_sessions", "disconnect_sessions", "accept_findings"}),
    User.Role.OPERATOR: frozenset({
        "view_overview", "view_files", "review_files", "view_partners", "view_users",
        "view_credentials", "view_deliveries", "resend_deliveries", "view_settings",
        "view_sessions", "disconnect_sessions"}),
    User.Role.AUDITOR: frozenset({
        "view_overview", "view_files", "view_audit", "verify_audit", "view_users",
        "view_credentials", "view_deliveries", "view_tokens", "view_settings",
        "view_sessions"}),
}

View = TypeVar("View", bound=Callable[..., HttpResponseBase])


def can(user: Any, capability: str) -> bool:
    """Return True when the user's role holds the capability."""
    role = getattr(user, "role", None)
    return capability in CAPABILITIES.get(str(role), frozenset())


def is_dashboard_user(user: Any) -> bool:
    """Return True for an authenticated user whose role has dashboard access."""
    return bool(getattr(user, "is_authenticated", False)) and str(user.role) in CAPABILITIES


def password_change_due(user: User) -> bool:
    """Return True when the user must choose a new password before going on."""
    return user.must_change_password or passwords.is_expired(user)


def origin_of(request: HttpRequest) -> Origin:
    """Return the audit origin of a dashboard request: who, from which address."""
    origin = Origin(source_ip=client_ip(request), protocol="web")
    return origin.as_user(request.user) if request.user.is_authenticated else origin


def client_ip(request: HttpRequest) -> str | None:
    """Return the client address (forwarded headers only from trusted proxies)."""
    return client_address.client_ip(request)


def is_htmx(request: HttpRequest) -> bool:
    """Return True for a request htmx made (a fragment is enough as the answer)."""
    return request.headers.get("HX-Request") == "true"


def _send_to(request: HttpRequest, target: str) -> HttpResponse:
    """Redirect the browser; an htmx request is told to load the whole page there."""
    if is_htmx(request):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return HttpResponseRedirect(target)


def _to_login(request: HttpRequest) -> HttpResponse:
    """Send the browser to the login page, coming back here afterwards."""
    return _send_to(request, f"{settings.LOGIN_URL}?{urlencode({'next': request.get_full_path()})}")


def _refusal(request: HttpRequest, capability: str) -> HttpResponse:
    """Return the page telling a signed-in user this part is not for their role."""
    return render(request, "dashboard/forbidden.html", {"capability": capability}, status=403)


def requires(capability: str, *, allow_password_change: bool = False) -> Callable[[View], View]:
    """Return a decorator admitting only signed-in dashboard users holding the capability.

    A role that needs a second factor must have passed it in this session; a user whose
    password must change is sent to change it first.
    """

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            user = request.user
            if not user.is_authenticated:
                return _to_login(request)
            if not is_dashboard_user(user):
                logout(request)
                return render(request, "dashboard/no_access.html", status=403)
            assert isinstance(user, User)
            if mfa.required(user) and not user.is_verified():  # type: ignore[attr-defined]
                logout(request)
                return _to_login(request)
            if not allow_password_change and password_change_due(user):
                return _send_to(request, reverse("dashboard:password"))
            if capability not in CAPABILITIES[str(user.role)]:
                return _refusal(request, capability)
            return view(request, *args, **kwargs)

        return cast(View, wrapper)

    return decorate
