"""API throttles: one bucket per token (or session user), one per address for anonymous calls.

Rates are read from `REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]` on every request rather than
once at import, so a changed setting takes effect without a restart of the class.
Counters live in Django's cache: per process with the default local-memory cache.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle

from accounts.models import ApiToken
from mft import client_address


class _SettingsRate:
    """Read the scope's rate from the current settings."""

    scope: str | None

    def get_rate(self) -> str | None:
        """Return the configured rate for this scope, None for no limit."""
        rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES or {}
        return rates.get(self.scope or "")


class TokenRateThrottle(_SettingsRate, SimpleRateThrottle):
    """Limit each API token (a session: each user) to the `token` rate."""

    scope = "token"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        """Return the bucket of the request's token, or None for anonymous requests."""
        if isinstance(request.auth, ApiToken):
            ident = f"token-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            return None
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AddressRateThrottle(_SettingsRate, AnonRateThrottle):
    """Limit anonymous requests per client address to the `anon` rate."""

    def get_ident(self, request: Request) -> str:
        """Return the client address as bans and the audit log see it (trusted proxies
        honoured, a forged X-Forwarded-For ignored)."""
        return client_address.client_ip(request) or ""
