"""The read-only settings page: listeners, TLS policy, scanner state (asked of a real
clamd), storage, database and broker, and never a secret."""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.models import User
from mft import bootstrap, configuration
from monitoring.collectors import signature_date

pytestmark = pytest.mark.django_db(transaction=True)


def test_shows_ports_passive_range_and_tls_policy(admin_client, settings):
    bootstrap.ensure_certificate()
    settings.MASQUERADE_ADDRESS = "203.0.113.7"
    page = admin_client.get("/settings/").content.decode()
    low, high = settings.PASSIVE_PORTS
    assert f"<dd>{settings.FTPS_PORT}</dd>" in page
    assert f"<dd>{settings.FTPS_IMPLICIT_PORT}</dd>" in page
    assert f"{low}\u2013{high}" in page and "203.0.113.7" in page
    assert f"<dd>{settings.TLS_MIN_VERSION}</dd>" in page
    assert 'id="settings-fingerprint">' in page and "no certificate yet" not in page


def test_shows_the_database_engine_and_the_broker_without_credentials(admin_client, settings):
    settings.CELERY_BROKER_URL = "redis://:hunter-" + "x" * 8 + "@broker.internal:6379/7"
    page = admin_client.get("/settings/").content.decode()
    assert "redis://broker.internal:6379/7" in page and "hunter-" not in page
    assert f'Database</dt><dd class="mono">{connection.vendor} (' in page


def test_scanner_not_configured_is_shown_as_such(admin_client, settings):
    settings.SCAN_MODE, settings.CLAMD_ADDRESS = "on", ""
    page = admin_client.get("/settings/").content.decode()
    assert 'id="scanner-status">not_configured<' in page


def test_scanner_down_is_shown_with_the_reason(admin_client, settings):
    settings.SCAN_MODE, settings.CLAMD_ADDRESS = "on", "tcp://127.0.0.1:9"
    assert configuration.scanner().status == "down"
    assert 'id="scanner-status">down<' in admin_client.get("/settings/").content.decode()


def test_scanner_up_is_shown_with_its_version(admin_client, settings, clamd):
    settings.SCAN_MODE, settings.CLAMD_ADDRESS = "on", clamd.address
    scanner = configuration.scanner()
    assert scanner.status == "ok" and scanner.detail.startswith("ClamAV")
    assert scanner.signatures_built == signature_date(scanner.detail)
    page = admin_client.get("/settings/").content.decode()
    assert 'id="scanner-status">ok<' in page and scanner.detail in page


def test_operator_and_auditor_read_it(signed_in):
    for role in (User.Role.OPERATOR, User.Role.AUDITOR):
        assert signed_in(role).get("/settings/").status_code == 200
