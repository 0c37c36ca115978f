"""Files: the list with filters, each file's whole story, and review decisions."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from audit.models import AuditEvent
from dashboard.access import can, is_htmx, origin_of, requires
from dashboard.forms import FileFilterForm, ReviewForm
from mft.errors import PortsideError
from transfers import pipeline, review
from transfers.filters import StoredFileFilter
from transfers.models import StoredFile

PAGE_SIZE = 50


def _matching(form: FileFilterForm) -> QuerySet[StoredFile]:
    """Return the files the filter form selects, newest first (the API's filter set)."""
    files = StoredFile.objects.select_related("partner").order_by("-created_at", "-id")
    if not form.is_valid():
        return files.none()
    if form.cleaned_data.get("stuck"):
        stuck = pipeline.stuck_files(settings.PIPELINE_STUCK_SECONDS)
        files = files.filter(pk__in=[f.pk for f in stuck])
    return StoredFileFilter(form.filter_data(), queryset=files).qs


@requires("view_files")
def file_list(request: HttpRequest) -> HttpResponse:
    """List files, filtered by partner, user, state and date; htmx swaps the table only."""
    form = FileFilterForm(request.GET)
    page = Paginator(_matching(form), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    template = "dashboard/_file_table.html" if is_htmx(request) else "dashboard/files.html"
    return render(request, template, context)


@requires("view_files")
def file_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a file's metadata, its pipeline steps with timings, and its audit events."""
    stored = get_object_or_404(StoredFile.objects.select_related("partner", "owner"), pk=pk)
    events = AuditEvent.objects.filter(object_type="storedfile",
                                       object_id=str(stored.pk)).order_by("id")
    decisions = review.decisions(stored) if can(request.user, "review_files") else []
    context = {"file": stored, "steps": stored.steps.order_by("id"), "events": events[:500],
               "decisions": decisions, "form": ReviewForm()}
    return render(request, "dashboard/file_detail.html", context)


def _decide(stored: StoredFile, decision: str, reason: str, request: HttpRequest) -> str:
    """Carry out a review decision through the review service; return what was done."""
    origin = origin_of(request)
    if decision == "release":
        review.release(stored, reason=reason, origin=origin)
        return "released"
    if decision == "delete":
        review.delete_stopped(stored, reason=reason, origin=origin)
        return "deleted"
    review.retry_now(stored, origin=origin)
    return "sent for another try"


@require_POST
@requires("review_files")
def file_review(request: HttpRequest, pk: int) -> HttpResponse:
    """Release, delete or retry a stopped file; a release or delete needs a reason."""
    stored = get_object_or_404(StoredFile, pk=pk)
    form = ReviewForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(str(error) for error in errors))
        return redirect("dashboard:file-detail", pk=pk)
    try:
        done = _decide(stored, form.cleaned_data["decision"], form.cleaned_data["reason"],
                       request)
    except PortsideError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{stored.path} {done}.")
    return redirect("dashboard:file-detail", pk=pk)
