"""API tokens: list (never a secret), create (the secret shown once), revoke.

`accounts.tokens` creates, stores only a digest, and audits; the dashboard shows the
secret in the one response that creates it.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import tokens
from accounts.models import ApiToken
from dashboard.access import origin_of, requires
from dashboard.user_forms import NewTokenForm, add_service_error
from mft.errors import PortsideError

PAGE_SIZE = 50


def _page(request: HttpRequest, form: NewTokenForm) -> HttpResponse:
    """Render the token list with the creation form."""
    rows = ApiToken.objects.select_related("user").order_by(
        F("revoked_at").asc(nulls_first=True), "-created_at", "-id")
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "dashboard/tokens.html", {"page": page, "form": form})


@requires("view_tokens")
def token_list(request: HttpRequest) -> HttpResponse:
    """List API tokens, live ones first: owner, scopes, expiry, allow-list, last use."""
    return _page(request, NewTokenForm())


@never_cache
@require_POST
@requires("manage_tokens")
def token_new(request: HttpRequest) -> HttpResponse:
    """Create a token; its secret is in this one response, then only its digest is kept."""
    form = NewTokenForm(request.POST)
    if form.is_valid():
        try:
            made = tokens.create_api_token(form.cleaned_data["user"], origin=origin_of(request),
                                           **form.details())
        except PortsideError as exc:
            add_service_error(form, exc)
        else:
            response = render(request, "dashboard/token_created.html",
                              {"token": made.token, "secret": made.secret})
            response["Cache-Control"] = "no-store"
            return response
    return _page(request, form)


@require_POST
@requires("manage_tokens")
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke a token; it stops working at once."""
    token = get_object_or_404(ApiToken.objects.select_related("user"), pk=pk)
    try:
        tokens.revoke(token, origin=origin_of(request))
    except PortsideError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Token pst_{token.prefix}… of {token.user.username} revoked.")
    return redirect("dashboard:tokens")
