"""The signed-in person's own account: password change (forced or chosen), recovery codes."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import mfa, passwords
from accounts.models import User
from dashboard.access import origin_of, password_change_due, requires
from dashboard.forms import PasswordChangeForm
from dashboard.views.login import recovery_codes_page
from mft.errors import PortsideError


def _me(request: HttpRequest) -> User:
    """Return the signed-in user (the decorator has made sure there is one)."""
    assert isinstance(request.user, User)
    return request.user


@requires("view_overview", allow_password_change=True)
def account(request: HttpRequest) -> HttpResponse:
    """Show the account's role, password expiry and second-factor state."""
    me = _me(request)
    context = {"me": me, "password_expires": passwords.expires_at(me),
               "enrolled": mfa.enrolled(me), "codes_left": mfa.recovery_codes_left(me),
               "mfa_required": mfa.required(me)}
    return render(request, "dashboard/account.html", context)


@never_cache
@requires("view_overview", allow_password_change=True)
def change_password(request: HttpRequest) -> HttpResponse:
    """Change the password; forced when it was generated for the user or has expired."""
    me = _me(request)
    forced = password_change_due(me)
    form = PasswordChangeForm(me, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            passwords.change_password(me, form.cleaned_data["new"], origin=origin_of(request))
        except PortsideError as exc:
            form.add_error("new", str(exc))
        else:
            update_session_auth_hash(request, me)
            messages.success(request, "Password changed.")
            return redirect("dashboard:overview" if forced else "dashboard:account")
    return render(request, "dashboard/password.html", {"form": form, "forced": forced})


@require_POST
@requires("view_overview")
def recovery_codes(request: HttpRequest) -> HttpResponse:
    """Replace the recovery codes and show the new ones once."""
    try:
        codes = mfa.new_recovery_codes(_me(request), origin=origin_of(request))
    except PortsideError as exc:
        messages.error(request, str(exc))
        return redirect("dashboard:account")
    return recovery_codes_page(request, codes, reverse("dashboard:account"))
