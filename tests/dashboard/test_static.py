"""The app serves its own static files (whitenoise), as `make run` does after collectstatic."""

from __future__ import annotations

import gzip

import pytest
from django.core.management import call_command
from django.test import Client


@pytest.fixture
def collected(settings, tmp_path):  # type: ignore[no-untyped-def]
    """Collect the static files into a fresh root, as run_platform does at start-up."""
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    return settings.STATIC_ROOT


def test_htmx_is_served_compressed_by_the_app(collected, settings):
    assert not settings.DEBUG  # Django itself serves no static file then: whitenoise does
    response = Client().get("/static/dashboard/htmx.min.js", HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200 and response["Content-Encoding"] == "gzip"
    body = gzip.decompress(b"".join(response.streaming_content))
    assert body == (collected / "dashboard" / "htmx.min.js").read_bytes()
    assert "htmx" in body.decode()[:2000]


def test_a_missing_static_file_is_not_found(collected):
    assert Client().get("/static/dashboard/nothing-here.js").status_code == 404
