"""The identity provider's endpoints: as configured, else from its discovery document.

The document is fetched when a sign-in first needs it, never at start-up (a provider that
is down must not stop the platform), and kept for an hour per process.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests
from django.conf import settings
from mozilla_django_oidc.utils import import_from_settings

from mft.errors import TemporarilyUnavailable

CACHE_SECONDS = 3600
# mozilla-django-oidc's setting names and the discovery document's keys for them.
DOCUMENT_KEYS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
_documents: dict[str, tuple[float, dict[str, Any]]] = {}
_lock = threading.Lock()


def setting(name: str, *default: Any) -> Any:
    """Return a mozilla-django-oidc setting; an endpoint left unset comes from discovery."""
    key = DOCUMENT_KEYS.get(name)
    if key and not getattr(settings, name, None) and settings.OIDC_ISSUER:
        endpoint = document(settings.OIDC_ISSUER).get(key)
        if not endpoint:
            raise TemporarilyUnavailable(f"the identity provider publishes no {key}")
        return endpoint
    return import_from_settings(name, *default)


def document(issuer: str) -> dict[str, Any]:
    """Return the issuer's discovery document, fetched at most once an hour."""
    with _lock:
        cached = _documents.get(issuer)
    if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    fetched = _fetch(issuer)
    with _lock:
        _documents[issuer] = (time.monotonic(), fetched)
    return fetched


def _fetch(issuer: str) -> dict[str, Any]:
    """Read the discovery document and check that it speaks for this issuer."""
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT,
                                verify=settings.OIDC_VERIFY_SSL)
        response.raise_for_status()
        found: dict[str, Any] = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise TemporarilyUnavailable(f"the identity provider cannot be reached ({url}: "
                                     f"{type(exc).__name__})") from None
    if str(found.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise TemporarilyUnavailable(f"the discovery document at {url} names issuer "
                                     f"{found.get('issuer')!r}, not {issuer!r}")
    return found
