"""`/healthz`: clamd's status and the age of its signature database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from mft import health

pytestmark = pytest.mark.django_db


def test_healthz_reports_a_live_clamd_with_its_signature_fields(clamd):
    with override_settings(CLAMD_ADDRESS=clamd.address, SCAN_MODE="on"):
        report = Client().get("/healthz").json()
    scanner = report["components"]["clamd"]
    assert scanner["status"] == "ok" and scanner["version"].startswith("ClamAV ")
    # The test database is home-made: clamd names no official database, so no date.
    assert scanner["signatures_built_at"] is None and scanner["signature_age_seconds"] is None


def test_healthz_reports_clamd_down_when_nothing_listens(unused_tcp_address):
    with override_settings(CLAMD_ADDRESS=unused_tcp_address, SCAN_MODE="on"):
        report = Client().get("/healthz").json()
    assert report["components"]["clamd"]["status"] == "down"


def test_signature_age_is_computed_from_an_official_version_reply():
    built = timezone.now().replace(microsecond=0) - timedelta(days=2, hours=3)
    version = f"ClamAV 1.4.6/27800/{built.astimezone(UTC):%a %b %d %H:%M:%S %Y}"
    signatures = health._signatures(version)
    assert datetime.fromisoformat(signatures["signatures_built_at"]) == built
    assert 2 * 86400 + 3 * 3600 <= signatures["signature_age_seconds"] < 2 * 86400 + 3 * 3600 + 60


@pytest.fixture
def unused_tcp_address() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"
