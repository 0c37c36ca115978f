"""Deliveries: receipts with filters, each delivery's attempts and receipt, re-send, export.

Reads go through the API's filter set and `deliveries.receipts`; a re-send is
`deliveries.services.resend`, which audits it.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dashboard.access import is_htmx, origin_of, requires
from dashboard.delivery_forms import DeliveryFilterForm
from deliveries import receipts, services
from deliveries.filters import DeliveryFilter
from deliveries.models import Delivery
from mft.errors import PortsideError

PAGE_SIZE = 50


def _matching(form: DeliveryFilterForm) -> QuerySet[Delivery]:
    """Return the deliveries the form selects, newest first (the API's filter set)."""
    rows = Delivery.objects.select_related("endpoint__partner", "route", "pull", "stored_file")
    rows = rows.order_by("-created_at", "-id")
    if not form.is_valid():
        return rows.none()
    return DeliveryFilter(form.filter_data(), queryset=rows).qs


@requires("view_deliveries")
def delivery_list(request: HttpRequest) -> HttpResponse:
    """List deliveries filtered by status, direction, partner and endpoint."""
    form = DeliveryFilterForm(request.GET)
    page = Paginator(_matching(form), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    template = ("dashboard/_delivery_table.html" if is_htmx(request)
                else "dashboard/deliveries.html")
    return render(request, template, context)


@requires("view_deliveries")
def delivery_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a delivery's receipt, its attempts and its re-sends."""
    delivery = get_object_or_404(
        Delivery.objects.select_related("endpoint__partner", "route", "pull", "stored_file"),
        pk=pk)
    context = {"delivery": delivery, "attempts": delivery.attempts_log.order_by("number"),
               "resends": delivery.resends.order_by("-created_at")}
    return render(request, "dashboard/delivery_detail.html", context)


@require_POST
@requires("resend_deliveries")
def delivery_resend(request: HttpRequest, pk: int) -> HttpResponse:
    """Send a finished push again as a new delivery (audited); go to the new one."""
    delivery = get_object_or_404(Delivery.objects.select_related("stored_file", "route"), pk=pk)
    try:
        again = services.resend(delivery, origin=origin_of(request))
    except PortsideError as exc:
        messages.error(request, str(exc))
        return redirect("dashboard:delivery-detail", pk=pk)
    messages.success(request, f"Re-sent as delivery {again.pk}.")
    return redirect("dashboard:delivery-detail", pk=again.pk)


@requires("view_deliveries")
def delivery_export(request: HttpRequest) -> StreamingHttpResponse:
    """Download the matching receipts as CSV, streamed."""
    rows = _matching(DeliveryFilterForm(request.GET)).iterator(chunk_size=500)
    response = StreamingHttpResponse((chunk.encode() for chunk in receipts.export(rows)),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="portside-deliveries.csv"'
    return response
