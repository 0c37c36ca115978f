"""Certificates and keys: partners' client certificates and PGP keys with their expiry.

Uploads are parsed and vetted by `accounts.credentials` (the API's service), whose refusals
show as form errors; additions and removals are audited there.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import credentials, expiring
from accounts.models import ClientCertificate, PgpKey
from dashboard.access import origin_of, requires
from dashboard.user_forms import CertificateForm, PgpKeyForm, add_service_error
from mft.errors import PortsideError


def _page(request: HttpRequest, certificate_form: CertificateForm,
          key_form: PgpKeyForm) -> HttpResponse:
    """Render the list of certificates and keys with the two upload forms."""
    now = timezone.now()
    context = {
        "certificates": ClientCertificate.objects.select_related("partner", "user")
        .order_by("not_after"),
        "pgp_keys": PgpKey.objects.select_related("partner").order_by("expires_at", "id"),
        "now": now, "soon": now + timedelta(days=expiring.WARNING_DAYS),
        "warning_days": expiring.WARNING_DAYS,
        "certificate_form": certificate_form, "key_form": key_form,
    }
    return render(request, "dashboard/credentials.html", context)


@requires("view_credentials")
def credential_list(request: HttpRequest) -> HttpResponse:
    """List client certificates and PGP keys, soonest expiry first."""
    return _page(request, CertificateForm(), PgpKeyForm())


@require_POST
@requires("manage_credentials")
def certificate_add(request: HttpRequest) -> HttpResponse:
    """Register a PEM client certificate (pasted or uploaded) for a partner or one user."""
    form = CertificateForm(request.POST, request.FILES)
    if form.is_valid():
        data = form.cleaned_data
        try:
            cert = credentials.add_certificate(data["partner"], data["pem"], user=data["user"],
                                               origin=origin_of(request))
        except PortsideError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"Certificate {cert.subject} added for "
                                      f"{cert.partner.name}.")
            return redirect("dashboard:credentials")
    return _page(request, form, PgpKeyForm())


@require_POST
@requires("manage_credentials")
def certificate_remove(request: HttpRequest, pk: int) -> HttpResponse:
    """Remove a client certificate; logins presenting it stop working at once."""
    cert = get_object_or_404(ClientCertificate.objects.select_related("partner", "user"), pk=pk)
    credentials.remove_certificate(cert, origin=origin_of(request))
    messages.success(request, f"Certificate {cert.subject} removed.")
    return redirect("dashboard:credentials")


@require_POST
@requires("manage_credentials")
def pgp_key_add(request: HttpRequest) -> HttpResponse:
    """Register a partner's armored OpenPGP public key (pasted or uploaded)."""
    form = PgpKeyForm(request.POST, request.FILES)
    if form.is_valid():
        data = form.cleaned_data
        try:
            key = credentials.add_pgp_key(data["partner"], data["armored"],
                                          origin=origin_of(request))
        except PortsideError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"PGP key {key.fingerprint} added for "
                                      f"{key.partner.name}.")
            return redirect("dashboard:credentials")
    return _page(request, CertificateForm(), form)


@require_POST
@requires("manage_credentials")
def pgp_key_remove(request: HttpRequest, pk: int) -> HttpResponse:
    """Remove a partner's PGP key."""
    key = get_object_or_404(PgpKey.objects.select_related("partner"), pk=pk)
    credentials.remove_pgp_key(key, origin=origin_of(request))
    messages.success(request, f"PGP key {key.fingerprint} removed.")
    return redirect("dashboard:credentials")
