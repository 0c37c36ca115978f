"""Helpers for the API tests: token-bearing clients, stored files, a clean throttle cache."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts import tokens, users
from audit.events import Origin
from audit.models import AuditEvent
from transfers import pipeline, uploads
from transfers.models import FileState, StoredFile

ORIGIN = Origin(actor="test", protocol="test")


@pytest.fixture(autouse=True)
def fresh_throttles() -> Iterator[None]:
    """Start each test with empty throttle buckets (they live in the cache)."""
    cache.clear()
    yield
    cache.clear()


def allow_https(user: Any) -> None:
    """Let a user use the API (partner users get FTPS only by default)."""
    user.allowed_protocols = sorted({*user.allowed_protocols, "https"})
    user.save(update_fields=["allowed_protocols"])


def token_for(user: Any, *scopes: str, **options: Any) -> str:
    """Return a new token secret for the user with the scopes."""
    allow_https(user)
    return tokens.create_api_token(user, scopes=list(scopes), **options).secret


def client_for(user: Any, *scopes: str, **options: Any) -> APIClient:
    """Return an APIClient sending a fresh bearer token of the user with the scopes."""
    return bearer_client(token_for(user, *scopes, **options))


def bearer_client(secret: str) -> APIClient:
    """Return an APIClient sending the given bearer token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def make_user(username: str, role: str, partner: Any = None) -> Any:
    """Create a user of any API-creatable role through the service."""
    return users.create_user(username, role=role, partner=partner, origin=ORIGIN,
                             allowed_protocols=["https"]).user


def store(user: Any, path: str, data: bytes = b"payload") -> StoredFile:
    """Upload bytes through the same service the gateway and the API use."""
    upload = uploads.begin_upload(user, path, origin=ORIGIN, make_parents=True)
    upload.write(data)
    return upload.finish()


def pipeline_actions(stored: StoredFile) -> list[str]:
    """Return the file's pipeline audit events, oldest first."""
    return list(AuditEvent.objects.filter(object_id=str(stored.pk), action__startswith="pipeline.")
                .order_by("id").values_list("action", flat=True))


def make_ready(stored: StoredFile, settings: Any) -> StoredFile:
    """Run the pipeline synchronously with scanning off until the file is ready."""
    settings.SCAN_MODE = "off"
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.READY, (stored.state, stored.state_reason)
    return stored


def set_state(stored: StoredFile, state: str) -> StoredFile:
    """Put a file in a pipeline state directly (for permission tests)."""
    StoredFile.objects.filter(pk=stored.pk).update(state=state)
    stored.refresh_from_db()
    return stored
