"""Endpoints, routes and pulls: list, create, change, remove, and test an endpoint.

`deliveries.services` (the API's service) validates, seals secrets, keeps beat's schedule in
step and audits; secrets are write-only here as in the API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from django.contrib import messages
from django.db.models import Count, Model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dashboard.access import can, origin_of, requires
from dashboard.delivery_forms import ConfigForm, EndpointForm, PullForm, RouteForm
from dashboard.user_forms import add_service_error
from deliveries import services
from deliveries.models import PartnerEndpoint, Pull, Route
from mft.errors import PortsideError


class _Kind(NamedTuple):
    """What the pages need to know of one kind of delivery configuration."""

    model: type[Model]
    form: type[ConfigForm]
    create: Callable[..., Any]
    update: Callable[..., Any]
    remove: Callable[..., Any]


_KINDS = {
    "endpoint": _Kind(PartnerEndpoint, EndpointForm, services.create_endpoint,
                      services.update_endpoint, services.remove_endpoint),
    "route": _Kind(Route, RouteForm, services.create_route, services.update_route,
                   services.remove_route),
    "pull": _Kind(Pull, PullForm, services.create_pull, services.update_pull,
                  services.remove_pull),
}


@requires("view_deliveries")
def endpoint_list(request: HttpRequest) -> HttpResponse:
    """List endpoints (never a secret), push routes and scheduled pulls."""
    context = {
        "endpoints": PartnerEndpoint.objects.select_related("partner").annotate(
            route_count=Count("routes", distinct=True), pull_count=Count("pulls", distinct=True)),
        "routes": Route.objects.select_related("endpoint__partner", "source_partner",
                                               "source_user"),
        "pulls": Pull.objects.select_related("endpoint__partner", "local_user"),
    }
    return render(request, "dashboard/endpoints.html", context)


def _create_arguments(form: ConfigForm) -> dict[str, Any]:
    """Return the create service's keyword arguments from a valid form."""
    if isinstance(form, EndpointForm):
        return form.details()
    return dict(form.cleaned_data)


def _editor(request: HttpRequest, kind: str, form: ConfigForm,
            obj: Model | None = None) -> HttpResponse:
    """Render the form page of an endpoint, route or pull."""
    return render(request, "dashboard/delivery_config_form.html",
                  {"kind": kind, "form": form, "object": obj})


@requires("manage_deliveries")
def config_new(request: HttpRequest, kind: str) -> HttpResponse:
    """Create an endpoint, a route or a pull."""
    form = _KINDS[kind].form(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            made = _KINDS[kind].create(origin=origin_of(request), **_create_arguments(form))
        except PortsideError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"The {kind} {made} was created.")
            return redirect("dashboard:endpoints")
    return _editor(request, kind, form)


@requires("view_deliveries")
def config_edit(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    """Show an endpoint, route or pull; admins change it (only what changed is sent)."""
    if request.method == "POST":
        return _save_changes(request, kind, pk)
    form = _KINDS[kind].form(instance=get_object_or_404(_KINDS[kind].model, pk=pk))
    if not can(request.user, "manage_deliveries"):
        for field in form.fields.values():
            field.disabled = True
    return _editor(request, kind, form, form.instance)


@requires("manage_deliveries")
def _save_changes(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    """Send a changed form to the update service (admins only)."""
    obj = get_object_or_404(_KINDS[kind].model, pk=pk)
    form = _KINDS[kind].form(request.POST, instance=obj)
    if form.is_valid():
        changes = form.changes()
        if not changes:
            messages.info(request, "Nothing changed.")
            return redirect("dashboard:endpoints")
        try:
            _KINDS[kind].update(obj, origin=origin_of(request), **changes)
        except PortsideError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"The {kind} {obj} was changed: "
                                      f"{', '.join(sorted(changes))}.")
            return redirect("dashboard:endpoints")
    return _editor(request, kind, form, obj)


@require_POST
@requires("manage_deliveries")
def config_remove(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    """Delete an endpoint, route or pull, or disable it when deliveries refer to it."""
    obj = get_object_or_404(_KINDS[kind].model, pk=pk)
    try:
        kept = _KINDS[kind].remove(obj, origin=origin_of(request))
    except PortsideError as exc:
        messages.error(request, str(exc))
    else:
        done = "disabled (deliveries refer to it)" if kept is not None else "deleted"
        messages.success(request, f"The {kind} {obj} was {done}.")
    return redirect("dashboard:endpoints")


@require_POST
@requires("manage_deliveries")
def endpoint_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Connect to an endpoint, verify TLS, log in and list its folder; say what happened."""
    endpoint = get_object_or_404(PartnerEndpoint.objects.select_related("partner"), pk=pk)
    result = services.check_endpoint(endpoint)
    if result["ok"]:
        messages.success(request, f"{endpoint}: connected over {result['tls']}, logged in, "
                                  f"{result['files']} file(s) in {endpoint.remote_folder}.")
    else:
        messages.error(request, f"{endpoint}: {result['error']}")
    return redirect("dashboard:endpoints")
