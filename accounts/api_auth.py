"""DRF authentication by `Authorization: Bearer <token>`, through accounts.tokens."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts import tokens
from audit import events
from audit.events import Origin
from mft.errors import LoginRefused


def client_ip(request: Any) -> str | None:
    """Return the client address as the web server saw it."""
    return request.META.get("REMOTE_ADDR") or None


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Authenticate API clients by token; a bad token is a 401 with a reason-free message."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        """Return (user, token) for a valid bearer token, None when no token is sent."""
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header:
            return None
        parts = header.split()
        if parts[0] != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        address = client_ip(request)
        try:
            token = tokens.authenticate_token(parts[1], source_ip=address)
        except LoginRefused as refusal:
            events.login_failed(origin=Origin(source_ip=address, protocol="https"),
                                username="(api token)", reason=refusal.reason)
            raise exceptions.AuthenticationFailed("Invalid or expired token.") from None
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        """Ask for a bearer token in 401 replies."""
        return self.keyword
