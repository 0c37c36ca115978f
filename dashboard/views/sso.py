"""Single sign-on: send the browser to the identity provider, and take it back.

mozilla-django-oidc's views run the protocol; these subclasses answer 404 while single
sign-on is off, show a clear page when the sign-in is refused or the provider is down, and
hand an admitted user to the dashboard's own second-factor step instead of signing them in.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.generic import View
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from dashboard.views.login import after_first_factor
from mft.client_address import client_ip
from mft.errors import LoginRefused, TemporarilyUnavailable
from sso import discovery, services


def _refused(request: HttpRequest, message: str, status: int) -> HttpResponse:
    """Render the page saying why single sign-on did not let the person in."""
    return render(request, "dashboard/sso_refused.html", {"message": message}, status=status)


class SsoStart(OIDCAuthenticationRequestView):
    """Redirect to the identity provider's authorization endpoint (with state, nonce, PKCE)."""

    get_settings = staticmethod(discovery.setting)

    def __init__(self, **kwargs: Any) -> None:
        # The parent looks the endpoint up here, where an unreachable provider would be a
        # bare server error; get() does it instead.
        View.__init__(self, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        """Start a sign-in at the provider."""
        if not settings.OIDC_ENABLED:
            raise Http404("single sign-on is not configured")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = self.get_settings("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except TemporarilyUnavailable as outage:
            return _refused(request, str(outage), 503)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        response: HttpResponse = super().get(request)
        return response


class SsoCallback(OIDCAuthenticationCallbackView):
    """Finish the provider's sign-in, then continue with the dashboard's second factor."""

    get_settings = staticmethod(discovery.setting)

    def get(self, request: HttpRequest) -> HttpResponse:
        """Check the provider's answer; refusals and outages get a page of their own."""
        if not settings.OIDC_ENABLED:
            raise Http404("single sign-on is not configured")
        try:
            response: HttpResponse = super().get(request)
        except LoginRefused as refusal:
            return _refused(request, str(refusal), 403)
        except TemporarilyUnavailable as outage:
            return _refused(request, str(outage), 503)
        except services.AnswerRejected as rejected:
            return _refused(request, f"The identity provider's answer was not accepted: "
                                     f"{rejected}", 400)
        except SuspiciousOperation as suspicious:
            # Checks made before the provider is asked (the state): audited here.
            services.reject_answer(str(suspicious), source_ip=client_ip(request))
            return _refused(request, f"The identity provider's answer was not accepted: "
                                     f"{suspicious}", 400)
        return response

    def login_success(self) -> HttpResponse:
        """Go on as after a password: straight in when the provider did MFA, else TOTP."""
        wanted = self.request.session.pop("oidc_login_next", None)
        device = getattr(self.user, "otp_device", None)
        return after_first_factor(self.request, self.user, wanted, verified_by=device,
                                  first_factor="oidc")

    def login_failure(self) -> HttpResponse:
        """Send the browser back to the sign-in page with a note."""
        messages.error(self.request, "Single sign-on did not complete. Please try again.")
        return HttpResponseRedirect(settings.LOGIN_URL)
