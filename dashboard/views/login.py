"""Sign in: password through the one login policy, then a second factor, then the session.

Between the steps the session holds only a pending login (user id and when the password
step passed); the user is signed in to Django only once every step is done.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice

from accounts import mfa, services
from accounts.models import User
from audit.events import Origin
from dashboard import qr
from dashboard.access import client_ip, is_dashboard_user, origin_of
from dashboard.forms import CodeForm, EnrolForm, LoginForm
from mft.errors import LoginRefused, PortsideError, TemporarilyUnavailable
from sso.models import IdentityProviderDevice

PENDING = "dashboard.pending_login"
PENDING_SECONDS = 300
_BACKEND = "accounts.backends.PortsideBackend"


def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    """Return where to go after signing in: the asked-for page if it is ours, else home."""
    if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return candidate
    return reverse("dashboard:overview")


def _pending_user(request: HttpRequest) -> User | None:
    """Return the user whose password step passed recently in this session, if any."""
    pending: dict[str, Any] | None = request.session.get(PENDING)
    if not pending or time.time() - pending["at"] > PENDING_SECONDS:
        request.session.pop(PENDING, None)
        return None
    return User.objects.filter(pk=pending["user"], is_active=True).first()


def _factors(first: str, device: Device | None) -> str:
    """Name the factors a dashboard sign-in used, for the audit log."""
    if device is None:
        return first
    if isinstance(device, IdentityProviderDevice):
        return f"{first}+provider-mfa"
    return f"{first}+{'recovery-code' if isinstance(device, StaticDevice) else 'totp'}"


def _finish(request: HttpRequest, user: User, device: Device | None) -> None:
    """Sign the user in to the session, marked verified by the device when there is one."""
    pending = request.session.get(PENDING, {})
    after = pending.get("next")
    if pending.get("first_factor"):
        # Only now is the sign-in complete: the audit log's `login` says so, not the
        # password step before it (that one is `login.password`).
        services.complete_login(user, origin=Origin(source_ip=client_ip(request),
                                                    protocol="web"),
                                method=_factors(pending["first_factor"], device))
    auth_login(request, user, backend=_BACKEND)
    if device is not None:
        otp_login(request, device)
    request.session.pop(PENDING, None)
    request.session["dashboard.next"] = after


def _next_page(request: HttpRequest) -> str:
    """Return (and forget) where the signed-in user wanted to go."""
    return _safe_next(request, request.session.pop("dashboard.next", None))


@never_cache
def login(request: HttpRequest) -> HttpResponse:
    """Show the sign-in form; check the password through the login policy."""
    form = LoginForm(request.POST or None)
    wanted = request.POST.get("next") or request.GET.get("next")
    if request.method == "POST" and form.is_valid():
        attempt = services.LoginAttempt(username=form.cleaned_data["username"],
                                        password=form.cleaned_data["password"],
                                        protocol="web", source_ip=client_ip(request))
        try:
            user = services.login(attempt, more_steps=True)
        except LoginRefused as refusal:
            form.add_error(None, str(refusal))
        except TemporarilyUnavailable as outage:
            form.add_error(None, str(outage))
            return render(request, "dashboard/login.html",
                          {"form": form, "next": wanted or ""}, status=503)
        else:
            return after_first_factor(request, user, wanted, first_factor="password")
    return render(request, "dashboard/login.html", {"form": form, "next": wanted or ""})


def after_first_factor(request: HttpRequest, user: User, wanted: str | None, *,
                       verified_by: Device | None = None,
                       first_factor: str | None = None) -> HttpResponse:
    """Start the second-factor step, or sign in a role that has none.

    Called after the password (`first_factor="password"`: the `login` event is written
    when the session starts), or after single sign-on (sso) with `verified_by` when the
    identity provider asserted a second factor itself.
    """
    if not is_dashboard_user(user):
        return render(request, "dashboard/no_access.html", status=403)
    request.session.cycle_key()
    request.session[PENDING] = {"user": user.pk, "at": time.time(), "next": wanted,
                                "first_factor": first_factor}
    if verified_by is not None:
        _finish(request, user, verified_by)
        return HttpResponseRedirect(_next_page(request))
    if mfa.enrolled(user):
        return redirect("dashboard:login-verify")
    if mfa.required(user):
        return redirect("dashboard:login-enrol")
    _finish(request, user, None)
    return HttpResponseRedirect(_next_page(request))


def _restart(request: HttpRequest) -> HttpResponse:
    """Send the browser back to the password step (the pending login expired)."""
    messages.info(request, "Please sign in again.")
    return redirect(settings.LOGIN_URL)


@never_cache
def verify(request: HttpRequest) -> HttpResponse:
    """Ask for the authenticator's code (or a recovery code) and finish signing in."""
    user = _pending_user(request)
    if user is None or not mfa.enrolled(user):
        return _restart(request)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            device = mfa.verify(user, form.cleaned_data["code"], origin=origin_of(request))
        except LoginRefused as refusal:
            if refusal.reason == "address banned":
                request.session.pop(PENDING, None)
                return _restart(request)
            form.add_error("code", str(refusal))
        else:
            _finish(request, user, device)
            return HttpResponseRedirect(_next_page(request))
    return render(request, "dashboard/login_verify.html", {"form": form, "who": user})


@never_cache
def enrol(request: HttpRequest) -> HttpResponse:
    """Enrol an authenticator by QR code on first sign-in; show recovery codes once."""
    user = _pending_user(request)
    if user is None or mfa.enrolled(user):
        return _restart(request)
    device = mfa.pending_enrolment(user) or mfa.begin_enrolment(user)
    form = EnrolForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            enrolment = mfa.confirm_enrolment(user, form.cleaned_data["code"],
                                              origin=origin_of(request))
        except PortsideError as exc:
            form.add_error("code", str(exc))
        else:
            _finish(request, user, enrolment.device)
            return recovery_codes_page(request, enrolment.recovery_codes, _next_page(request))
    context = {"form": form, "who": user, "qr_svg": qr.svg(device.config_url),
               "secret": qr.spaced_secret(device.bin_key)}
    return render(request, "dashboard/login_enrol.html", context)


def recovery_codes_page(request: HttpRequest, codes: list[str], onward: str) -> HttpResponse:
    """Render freshly made recovery codes; they are never shown again."""
    response = render(request, "dashboard/recovery_codes.html",
                      {"codes": codes, "onward": onward})
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    """Sign out and forget the session."""
    auth_logout(request)
    messages.info(request, "Signed out.")
    return redirect(settings.LOGIN_URL)
