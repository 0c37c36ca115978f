"""Users and roles: list with filters, detail, create, settings, enable/disable, new password.

Every action goes through `accounts.users`, the service the API calls, which checks the
values and audits the change with before and after. Passwords appear in one response only.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import users
from accounts.filters import UserFilter
from accounts.models import User
from audit.models import AuditEvent
from dashboard.access import is_htmx, origin_of, requires
from dashboard.user_forms import NewUserForm, UserFilterForm, UserSettingsForm, add_service_error
from mft.errors import PortsideError

PAGE_SIZE = 50
RECENT = 20


def _matching(form: UserFilterForm) -> QuerySet[User]:
    """Return the users the filter form selects (the API's filter set), by login."""
    rows = User.objects.select_related("partner").order_by("username")
    if not form.is_valid():
        return rows.none()
    return UserFilter(form.filter_data(), queryset=rows).qs


@requires("view_users")
def user_list(request: HttpRequest) -> HttpResponse:
    """List users, filtered by partner, role and enabled; htmx swaps the table only."""
    form = UserFilterForm(request.GET)
    page = Paginator(_matching(form), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    template = "dashboard/_user_table.html" if is_htmx(request) else "dashboard/users.html"
    return render(request, template, context)


def _secret_page(request: HttpRequest, account: User, password: str | None,
                 created: bool) -> HttpResponse:
    """Render the one response that shows a new password; nothing may cache it."""
    response = render(request, "dashboard/user_password.html",
                      {"account": account, "password": password, "created": created})
    response["Cache-Control"] = "no-store"
    return response


@never_cache
@requires("manage_users")
def user_new(request: HttpRequest) -> HttpResponse:
    """Create a user; a generated password is shown on the next page, once."""
    form = NewUserForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        details = form.details()
        try:
            made = users.create_user(details.pop("username"), role=details.pop("role"),
                                     origin=origin_of(request), **details)
        except PortsideError as exc:
            add_service_error(form, exc)
        else:
            return _secret_page(request, made.user, made.password, created=True)
    return render(request, "dashboard/user_new.html", {"form": form})


@requires("view_users")
def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a user's settings (a form for admins), credentials, tokens and recent activity."""
    account = get_object_or_404(User.objects.select_related("partner"), pk=pk)
    return _detail(request, account, UserSettingsForm(initial=UserSettingsForm.initial_for(
        account)))


def _detail(request: HttpRequest, account: User, form: UserSettingsForm) -> HttpResponse:
    """Render a user's page with the given settings form."""
    activity = AuditEvent.objects.filter(object_type="user", object_id=str(account.pk))
    context = {"account": account, "form": form,
               "certificates": account.certificates.order_by("not_after"),
               "tokens": account.api_tokens.order_by("-created_at"),
               "password_keeper": users.password_kept_elsewhere(account),
               "activity": activity.order_by("-id")[:RECENT]}
    return render(request, "dashboard/user_detail.html", context)


@require_POST
@requires("manage_users")
def user_settings(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a user's quota, protocols, login method, permissions, allow-list and expiry."""
    account = get_object_or_404(User.objects.select_related("partner"), pk=pk)
    form = UserSettingsForm(request.POST, initial=UserSettingsForm.initial_for(account))
    if not form.is_valid():
        return _detail(request, account, form)
    changes = form.changes()
    if not changes:
        messages.info(request, "Nothing changed.")
        return redirect("dashboard:user-detail", pk=pk)
    try:
        users.update_user(account, origin=origin_of(request), **changes)
    except PortsideError as exc:
        add_service_error(form, exc)
        return _detail(request, account, form)
    messages.success(request, f"{account.username} updated: {', '.join(sorted(changes))}.")
    return redirect("dashboard:user-detail", pk=pk)


@require_POST
@requires("manage_users")
def user_active(request: HttpRequest, pk: int) -> HttpResponse:
    """Enable or disable a user (a disabled user's logins and tokens are refused)."""
    account = get_object_or_404(User, pk=pk)
    enable = request.POST.get("active") == "on"
    try:
        users.set_active(account, enable, origin=origin_of(request))
    except PortsideError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{account.username} {'enabled' if enable else 'disabled'}.")
    return redirect("dashboard:user-detail", pk=pk)


@never_cache
@require_POST
@requires("manage_users")
def user_reset_password(request: HttpRequest, pk: int) -> HttpResponse:
    """Give a user a new generated password, shown on this one page."""
    account = get_object_or_404(User, pk=pk)
    try:
        account, secret = users.reset_password(account, origin=origin_of(request))
    except PortsideError as exc:
        messages.error(request, str(exc))
        return redirect("dashboard:user-detail", pk=pk)
    return _secret_page(request, account, secret, created=False)
