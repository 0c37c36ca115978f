"""DRF authentication by `Authorization: Bearer <token>`, through accounts.tokens."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts import tokens
from accounts.models import ApiToken
from audit import events
from audit.events import Origin
from mft import client_address
from mft.errors import LoginRefused


def client_ip(request: Any) -> str | None:
    """Return the client address (trusted proxies honoured)."""
    return client_address.client_ip(request)


def origin_of(request: Request) -> Origin:
    """Return the audit origin of an API request: who, from where, with which token."""
    extra = {"token": request.auth.prefix} if isinstance(request.auth, ApiToken) else {}
    origin = Origin(source_ip=client_ip(request), protocol="https", extra=extra)
    return origin.as_user(request.user)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Authenticate API clients by token; a bad token is a 401 with a reason-free message."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        """Return (user, token) for a valid bearer token, None when no token is sent."""
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header:
            return None
        parts = header.split()
        if not parts or parts[0] != self.keyword:
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


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Describe bearer tokens in the OpenAPI schema."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        """Return the OpenAPI security scheme for `Authorization: Bearer <token>`."""
        return {"type": "http", "scheme": "bearer",
                "description": "An API token (`pst_…`), shown once when it is created."}
