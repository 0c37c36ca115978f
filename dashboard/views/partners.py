"""Partners: the list, each partner's page, the new-partner flow and the connection sheet."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from accounts.models import Partner, User
from audit.models import AuditEvent
from audit.partners import about_partner
from dashboard import connection
from dashboard.access import origin_of, requires
from dashboard.forms import NewPartnerForm
from deliveries.models import Route
from deliveries.onboarding import onboard_with_routes
from mft.errors import PortsideError

RECENT = 20


@requires("view_partners")
def partner_list(request: HttpRequest) -> HttpResponse:
    """List partners with their users and files of the last 24 hours."""
    since = timezone.now() - timedelta(hours=24)
    partners = Partner.objects.annotate(
        user_count=Count("users", distinct=True),
        recent_files=Count("files", filter=Q(files__created_at__gte=since), distinct=True),
    ).order_by("name")
    return render(request, "dashboard/partners.html", {"partners": partners})


@requires("view_partners")
def partner_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a partner's users, credentials, endpoints, routes, recent files and activity."""
    partner = get_object_or_404(Partner, pk=pk)
    context = {
        "partner": partner,
        "users": partner.users.order_by("username"),
        "certificates": partner.certificates.select_related("user").order_by("not_after"),
        "pgp_keys": partner.pgp_keys.order_by("expires_at"),
        "outgoing": Route.objects.filter(Q(source_user__partner=partner)
                                         | Q(source_partner=partner))
        .select_related("endpoint__partner", "source_user").order_by("name"),
        "files": partner.files.order_by("-created_at")[:RECENT],
        "activity": AuditEvent.objects.filter(about_partner(partner)).order_by("-id")[:RECENT],
        "now": timezone.now(),
    }
    return render(request, "dashboard/partner_detail.html", context)


@never_cache
@requires("manage_partners")
def partner_new(request: HttpRequest) -> HttpResponse:
    """Create a partner and its first user in one pass; end on the connection sheet.

    The generated password is in this one response only (not cached, never stored in
    clear): the sheet reached later shows everything but the password.
    """
    form = NewPartnerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            made = onboard_with_routes(form.details(), form.first_user(), form.endpoints(),
                                       origin=origin_of(request))
        except PortsideError as exc:
            form.add_error(None, str(exc))
        else:
            response = _sheet(request, made.partner, made.user, password=made.password)
            response["Cache-Control"] = "no-store"
            return response
    return render(request, "dashboard/partner_new.html", {"form": form})


def _sheet(request: HttpRequest, partner: Partner, user: User,
           password: str | None = None) -> HttpResponse:
    """Render the connection sheet for one of the partner's users."""
    context = {"partner": partner, "account": user, "password": password,
               "sheet": connection.sheet()}
    return render(request, "dashboard/connection_sheet.html", context)


@requires("view_partners")
def connection_sheet(request: HttpRequest, pk: int, username: str) -> HttpResponse:
    """Show the connection sheet again (without the password, which was shown once)."""
    partner = get_object_or_404(Partner, pk=pk)
    user = get_object_or_404(User, partner=partner, username=username)
    return _sheet(request, partner, user)


@requires("view_partners")
def server_certificate(request: HttpRequest) -> HttpResponse:
    """Download the gateway's certificate, for clients that verify it (curl --cacert)."""
    pem = connection.server_certificate_pem()
    if pem is None:
        raise Http404("the gateway has no certificate yet")
    response = HttpResponse(pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="portside-server.pem"'
    return response
