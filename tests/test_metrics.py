"""`/metrics`: who may read it, counters from every process, gauges from the database."""

from __future__ import annotations

import io
import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from accounts import services as account_services
from accounts import tokens
from accounts.services import LoginAttempt
from audit.events import Origin
from mft.errors import LoginRefused
from monitoring.signatures import signature_date
from tests import certs, ftps_client
from tests.live_worker import ROOT
from transfers import uploads
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = Origin(actor="test", protocol="test")


def _bearer(user: object, *scopes: str) -> Client:
    secret = tokens.create_api_token(user, scopes=list(scopes)).secret  # type: ignore[arg-type]
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Fetch /metrics and return every sample by name and labels."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def admin_client(cast) -> Client:
    return _bearer(cast.admin.user, "admin")


def test_metrics_refuse_an_anonymous_caller(cast):
    assert Client().get("/metrics").status_code == 401


def test_metrics_refuse_a_token_without_the_admin_scope(cast):
    assert _bearer(cast.admin.user, "read").get("/metrics").status_code == 403


def test_metrics_serve_an_admin_token_and_an_admin_session(cast, admin_client):
    scrape(admin_client)
    session = Client()
    session.force_login(cast.admin.user)
    scrape(session)


def test_metrics_serve_an_allowed_address_without_login(cast):
    with override_settings(METRICS_ALLOW=[ipaddress.ip_network("127.0.0.0/8")]):
        scrape(Client())
    with override_settings(METRICS_ALLOW=[ipaddress.ip_network("10.0.0.0/8")]):
        assert Client().get("/metrics").status_code == 401


def test_metrics_speak_openmetrics_when_asked(admin_client):
    response = admin_client.get("/metrics", HTTP_ACCEPT="application/openmetrics-text")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")


def test_logins_are_counted_by_protocol_and_outcome(cast, admin_client):
    before = scrape(admin_client)
    with pytest.raises(LoginRefused):
        account_services.login(LoginAttempt("alice", "wrong", "ftps", "192.0.2.7"))
    account_services.login(LoginAttempt("alice", cast.partner.password, "ftps", "192.0.2.7"))
    after = scrape(admin_client)
    for outcome in ("failure", "success"):
        name, labels = "portside_logins_total", {"protocol": "ftps", "outcome": outcome}
        assert value(after, name, **labels) - value(before, name, **labels) == 1
    assert (value(after, "portside_audit_events_total", action="login", outcome="failure")
            - value(before, "portside_audit_events_total", action="login", outcome="failure")
            == 1)


def test_uploads_are_counted_with_their_bytes(cast, admin_client):
    before = scrape(admin_client)
    upload = uploads.begin_upload(cast.partner.user, "/counted.bin", origin=ORIGIN)
    upload.write(b"z" * 1234)
    upload.finish()
    after = scrape(admin_client)
    assert (value(after, "portside_transfers_total", direction="in", outcome="success")
            - value(before, "portside_transfers_total", direction="in", outcome="success")
            == 1)
    assert (value(after, "portside_transfer_bytes_total", direction="in")
            - value(before, "portside_transfer_bytes_total", direction="in") == 1234)


def test_gauges_come_from_the_database(cast, admin_client, tmp_path):
    upload = uploads.begin_upload(cast.partner.user, "/stopped.txt", origin=ORIGIN)
    upload.write(b"x")
    stored = upload.finish()
    StoredFile.objects.filter(pk=stored.pk).update(state=FileState.HELD)
    certs.register(cast.partner.user, certs.make(tmp_path, "acme-client", days=(-1, 10)))
    samples = scrape(admin_client)
    assert value(samples, "portside_files", state="held") == 1
    assert value(samples, "portside_files", state="infected") == 0
    assert value(samples, "portside_pipeline_queue", step="scan", status="pending") == 1
    [days] = [v for (name, _), v in samples.items()
              if name == "portside_client_certificate_expiry_days"]
    assert 9.9 < days <= 10
    assert value(samples, "portside_scanner_up") == 0  # no clamd configured in this test
    assert value(samples, "portside_broker_up") == 1
    assert not any(name == "portside_collector_errors" for name, _ in samples)


def test_server_certificate_days_to_expiry_are_served(admin_client, tmp_path):
    served = certs.make(tmp_path, "mft.example.com", days=(-1, 45))
    with override_settings(TLS_CERT_FILE=Path(served.cert_path)):
        samples = scrape(admin_client)
    assert 44.9 < value(samples, "portside_server_certificate_expiry_days",
                        certificate="ftps") <= 45


def test_scanner_gauge_reads_a_live_clamd(admin_client, clamd):
    with override_settings(CLAMD_ADDRESS=clamd.address, SCAN_MODE="on"):
        assert value(scrape(admin_client), "portside_scanner_up") == 1


def test_signature_age_is_read_from_clamds_version():
    built = signature_date("ClamAV 1.0.7/27000/Mon Jan  1 09:30:00 2024")
    assert built == datetime(2024, 1, 1, 9, 30, tzinfo=UTC)
    assert signature_date("ClamAV 1.0.7") is None


def _in_another_process(code: str) -> subprocess.Popen[str]:
    """Run Python with Django set up, as a worker or gateway process would be."""
    prologue = "import django; django.setup(); from mft import metrics; "
    return subprocess.Popen(
        [sys.executable, "-c", prologue + code], cwd=ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"})


def test_counters_from_other_processes_are_merged_even_after_they_exit(admin_client):
    name, labels = "portside_notifications_total", {"channel": "email", "outcome": "sent"}
    before = value(scrape(admin_client), name, **labels)
    child = _in_another_process("metrics.NOTIFICATIONS.labels('email', 'sent').inc(5)")
    assert child.wait(60) == 0
    assert value(scrape(admin_client), name, **labels) - before == 5


def test_live_gauges_count_only_processes_still_running(admin_client):
    before = value(scrape(admin_client), "portside_ftps_sessions")
    child = _in_another_process("metrics.FTPS_SESSIONS.inc(3); print('up', flush=True); "
                                "import sys; sys.stdin.read()")
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        assert value(scrape(admin_client), "portside_ftps_sessions") - before == 3
    finally:
        child.communicate("", timeout=60)
    assert value(scrape(admin_client), "portside_ftps_sessions") == before


def _until(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_metrics_follow_a_real_ftps_session(cast, admin_client, gateway):
    """Sessions, logins, bytes in: scraped and parsed around a real upload."""
    before = scrape(admin_client)
    ftp = ftps_client.login(gateway.explicit_port, "alice", cast.partner.password)
    try:
        ftp.storbinary("STOR metered.csv", io.BytesIO(b"m" * 4096))
        _until(lambda: value(scrape(admin_client), "portside_transfers_total", direction="in",
                             outcome="success")
               > value(before, "portside_transfers_total", direction="in", outcome="success"))
        during = scrape(admin_client)
        assert value(during, "portside_ftps_sessions") - value(before, "portside_ftps_sessions") \
            == 1
    finally:
        ftp.quit()
    _until(lambda: value(scrape(admin_client), "portside_ftps_sessions")
           == value(before, "portside_ftps_sessions"))
    # The login's audit event (which the metric counts) reaches the chain through the
    # gateway's spool drainer, after the 230: wait for it, then check it counted once.
    _until(lambda: value(scrape(admin_client), "portside_logins_total", protocol="ftps",
                         outcome="success")
           > value(before, "portside_logins_total", protocol="ftps", outcome="success"))
    after = scrape(admin_client)
    assert (value(after, "portside_logins_total", protocol="ftps", outcome="success")
            - value(before, "portside_logins_total", protocol="ftps", outcome="success") == 1)
    assert (value(after, "portside_transfer_bytes_total", direction="in")
            - value(before, "portside_transfer_bytes_total", direction="in") == 4096)


def test_clearing_this_hosts_metric_files_leaves_other_hosts(tmp_path, monkeypatch):
    from mft import metrics

    monkeypatch.setattr(metrics, "DIRECTORY", tmp_path)
    host = metrics.process_identity(1).rsplit("-", 1)[0]
    names = [f"counter_{host}-1.db", f"gauge_livesum_{host}-2.db", "counter_other-host-3.db"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert metrics.clear_directory(this_host_only=True) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["counter_other-host-3.db"]
    assert metrics.clear_directory() == 1
    assert list(tmp_path.iterdir()) == []
