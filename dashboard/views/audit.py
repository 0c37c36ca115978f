"""The audit log: filter, search, page through, export, and verify the hash chain."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from audit import chain, exporters
from audit.filters import AuditEventFilter
from audit.models import AuditEvent
from audit.partners import about_partner
from dashboard.access import is_htmx, origin_of, requires
from dashboard.forms import AuditFilterForm

PAGE_SIZE = 50


def _matching(form: AuditFilterForm) -> QuerySet[AuditEvent]:
    """Return the events the form selects (the API's filter set, partner and text search)."""
    if not form.is_valid():
        return AuditEvent.objects.none()
    events = AuditEventFilter(form.filter_data(), queryset=AuditEvent.objects.all()).qs
    partner = form.cleaned_data.get("partner")
    if partner is not None:
        events = events.filter(about_partner(partner))
    text = form.cleaned_data.get("q")
    if text:
        events = events.filter(Q(object_repr__icontains=text) | Q(actor__icontains=text)
                               | Q(action__icontains=text))
    return events


def _before(request: HttpRequest) -> int | None:
    """Return the id the page starts below (keyset paging: no COUNT over millions)."""
    raw = request.GET.get("before", "")
    return int(raw) if raw.isdigit() else None


@requires("view_audit")
def audit_log(request: HttpRequest) -> HttpResponse:
    """List events newest first, a page at a time, with filters and search."""
    form = AuditFilterForm(request.GET)
    events = _matching(form).order_by("-id")
    before = _before(request)
    if before is not None:
        events = events.filter(id__lt=before)
    rows = list(events[:PAGE_SIZE + 1])
    query = request.GET.copy()
    query.pop("before", None)
    context = {"form": form, "events": rows[:PAGE_SIZE], "query": query.urlencode(),
               "older": rows[PAGE_SIZE - 1].pk if len(rows) > PAGE_SIZE else None,
               "paged": before is not None}
    template = "dashboard/_audit_table.html" if is_htmx(request) else "dashboard/audit.html"
    return render(request, template, context)


@requires("view_audit")
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    """Download the matching events as CSV (the export itself is audited)."""
    form = AuditFilterForm(request.GET)
    shown = {name: str(value) for name, value in request.GET.items()
             if name in form.fields and value}
    stream = exporters.export(_matching(form), "csv", origin=origin_of(request), filters=shown)
    response = StreamingHttpResponse(stream, content_type=exporters.FORMATS["csv"])
    response["Content-Disposition"] = 'attachment; filename="portside-audit.csv"'
    return response


@require_POST
@requires("verify_audit")
def audit_verify(request: HttpRequest) -> HttpResponse:
    """Walk the hash chain and show how many events hold and where it first breaks."""
    checked, broken = chain.verify()
    context: dict[str, Any] = {"checked": checked, "broken": broken}
    if is_htmx(request):
        return render(request, "dashboard/_verify_result.html", context)
    context.update({"form": AuditFilterForm({}), "query": "", "older": None, "paged": False,
                    "events": list(AuditEvent.objects.order_by("-id")[:PAGE_SIZE])})
    return render(request, "dashboard/audit.html", context)
