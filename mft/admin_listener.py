"""Keep the admin UI off the partner-facing web listener when it has a listener of its own.

With `MFT_ADMIN_PORT` set, the web app listens twice: the partner-facing address
(`MFT_BIND_ADDRESS:MFT_WEB_PORT`) serves only what partners and their systems use (the
REST API, its schema and docs, `/healthz`, static files), and the admin address
(`MFT_ADMIN_BIND_ADDRESS:MFT_ADMIN_PORT`) serves everything: dashboard, Django admin,
single sign-on, `/metrics`. The listener is read from the WSGI server's socket address
(`SERVER_NAME`/`SERVER_PORT`, which gunicorn takes from the listening socket, not from
the `Host` header), so a client cannot reach the admin UI by naming another host.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound

# What partners' people and systems need over HTTPS; everything else is the admin UI.
PARTNER_FACING_PREFIXES = ("/api/", "/healthz", "/static/")
_ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")


def is_admin_listener(request: HttpRequest) -> bool:
    """Return True when the request arrived on the admin listener."""
    port = settings.ADMIN_PORT
    if port is None or request.META.get("SERVER_PORT") != str(port):
        return False
    address = settings.ADMIN_BIND_ADDRESS
    return address in _ANY_ADDRESS or request.META.get("SERVER_NAME") == address.strip("[]")


def is_partner_facing(path: str) -> bool:
    """Return True for a path the partner-facing listener serves."""
    return path.startswith(PARTNER_FACING_PREFIXES)


class AdminListenerMiddleware:
    """Answer 404 for admin UI paths that arrive on the partner-facing listener."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (settings.ADMIN_PORT is not None and not is_partner_facing(request.path)
                and not is_admin_listener(request)):
            # 404, not 403: the partner-facing listener does not reveal that an admin UI exists.
            return HttpResponseNotFound("Not found", content_type="text/plain")
        return self.get_response(request)
