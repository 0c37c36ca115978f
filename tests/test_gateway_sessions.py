"""Live gateway sessions: published off the loop, listed by the API, disconnected on request.

Real gateways (in a thread, or a `run_gateway` child process to kill), real FTPS clients,
the real API with tokens.
"""

from __future__ import annotations

import ftplib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from mft import heartbeat
from mft.models import ProcessHeartbeat
from tests.api_client import client_for, fresh_throttles, make_user  # noqa: F401
from tests.ftps_client import login
from tests.live_worker import ROOT, current_database_url
from tests.waiting import until
from transfers import sessions
from transfers.models import GatewaySession, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024


def _listed(client: Any, **params: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/sessions/", params)
    assert response.status_code == 200, response.content
    return response.json()["results"]


def _session_of(client: Any, username: str) -> dict[str, Any] | None:
    rows = [row for row in _listed(client) if row["username"] == username]
    return rows[0] if rows else None


def _listed_with(client: Any, username: str, **expected: Any) -> dict[str, Any]:
    """Wait until the user's session is listed with the expected values; return it."""
    def probe() -> dict[str, Any] | None:
        row = _session_of(client, username)
        ok = row is not None and all(check(row[key]) if callable(check) else row[key] == check
                                     for key, check in expected.items())
        return row if ok else None

    return until(probe, timeout=10, what=f"{username}'s session with {expected}")


def _closed_by_server(ftp: ftplib.FTP) -> bool:
    """Return True when the server has closed the control connection."""
    assert ftp.sock is not None
    try:
        return ftp.sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # a reset or an unclean TLS end is a close too
        return True


def test_session_is_listed_with_user_address_and_tls_after_login(cast, gateway):
    ftp = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    admin = client_for(cast.admin.user, "read")
    row = _listed_with(admin, cast.partner.username)
    assert row["remote_address"] == "127.0.0.1"
    assert row["remote_port"] == ftp.sock.getsockname()[1]
    assert row["tls_version"] in ("TLSv1.2", "TLSv1.3") and row["tls_cipher"]
    assert row["implicit"] is False and row["partner_name"] == "Acme Corp"
    assert row["transfer_direction"] == "" and row["last_command_at"] is not None
    ftp.quit()


def test_implicit_session_is_listed_as_implicit(cast, gateway):
    ftp = login(gateway.implicit_port, cast.partner.username, cast.partner.password,
                implicit=True)
    row = _listed_with(client_for(cast.admin.user, "read"), cast.partner.username)
    assert row["implicit"] is True
    ftp.quit()


def test_upload_in_progress_shows_its_bytes_advancing(cast, gateway):
    ftp = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    ftp.voidcmd("TYPE I")
    admin = client_for(cast.admin.user, "read")
    conn = ftp.transfercmd("STOR slow.bin")
    conn.sendall(b"a" * CHUNK)
    first = _listed_with(admin, cast.partner.username, transfer_bytes=CHUNK)
    assert (first["transfer_direction"], first["transfer_path"]) == ("upload", "/slow.bin")
    assert first["transfer_size"] is None and first["transfer_started_at"]
    conn.sendall(b"b" * CHUNK)
    second = _listed_with(admin, cast.partner.username, transfer_bytes=2 * CHUNK)
    assert second["transfer_started_at"] == first["transfer_started_at"]
    conn.unwrap().close()
    assert ftp.voidresp().startswith("226")
    _listed_with(admin, cast.partner.username, transfer_direction="", transfer_bytes=0)
    ftp.quit()


def test_download_in_progress_shows_bytes_of_its_total(cast, gateway, settings):
    from tests.api_client import make_ready, store

    data = os.urandom(32 * 1024 * 1024)  # more than loopback socket buffers hold
    make_ready(store(cast.partner.user, "/big.bin", data), settings)
    ftp = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR big.bin")
    conn.recv(CHUNK)  # the socket buffers fill, then the server waits for this reader
    row = _listed_with(client_for(cast.admin.user, "read"), cast.partner.username,
                       transfer_direction="download")
    assert row["transfer_path"] == "/big.bin" and row["transfer_size"] == len(data)
    assert 0 < row["transfer_bytes"] < len(data)
    received = 0
    while chunk := conn.recv(1024 * 1024):
        received += len(chunk)
    conn.close()
    assert ftp.voidresp().startswith("226")
    ftp.quit()


def test_disconnect_through_the_api_closes_the_session_with_421_and_is_audited(cast, gateway):
    ftp = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    admin = client_for(cast.admin.user, "admin")
    row = _listed_with(admin, cast.partner.username)
    response = admin.post(f"/api/v1/sessions/{row['id']}/disconnect/",
                          {"reason": "maintenance window"}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["disconnect_requested_by"] == cast.admin.username
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        ftp.getresp()
    assert _closed_by_server(ftp)
    done = until(lambda: AuditEvent.objects.filter(action="session.disconnected").first(),
                 what="session.disconnected event")
    assert done.actor == cast.admin.username
    assert done.details["user"] == cast.partner.username
    assert done.details["reason"] == "maintenance window"
    assert done.details["session"] == row["id"]
    asked = AuditEvent.objects.get(action="session.disconnect_request")
    assert asked.actor == cast.admin.username and asked.protocol == "https"
    until(lambda: _session_of(admin, cast.partner.username) is None, what="session gone")


def test_disconnect_during_an_upload_keeps_the_part_received(cast, gateway):
    ftp = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    ftp.voidcmd("TYPE I")
    admin = client_for(cast.admin.user, "admin")
    conn = ftp.transfercmd("STOR cut.bin")
    conn.sendall(b"c" * CHUNK)
    row = _listed_with(admin, cast.partner.username, transfer_bytes=CHUNK)
    response = admin.post(f"/api/v1/sessions/{row['id']}/disconnect/",
                          {"reason": "partner asked us to stop it"}, format="json")
    assert response.status_code == 202
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        ftp.getresp()
    conn.close()
    kept = until(lambda: StoredFile.objects.filter(path="/cut.bin", state="partial").first(),
                 what="the part kept as resumable")
    assert kept.size == CHUNK


def test_operator_may_disconnect_a_session(cast, gateway):
    ftp = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    operator = client_for(make_user("op-one", "operator"), "read", "transfer")
    row = _listed_with(operator, cast.partner.username)
    response = operator.post(f"/api/v1/sessions/{row['id']}/disconnect/",
                             {"reason": "stuck client"}, format="json")
    assert response.status_code == 202, response.content
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        ftp.getresp()


def test_partner_token_sees_only_its_partners_sessions(cast, gateway):
    alice = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    mallory = login(gateway.explicit_port, cast.outsider.username, cast.outsider.password)
    admin = client_for(cast.admin.user, "read")
    _listed_with(admin, cast.partner.username)
    other = _listed_with(admin, cast.outsider.username)
    own = client_for(cast.partner.user, "read")
    assert [row["username"] for row in _listed(own)] == [cast.partner.username]
    assert own.get(f"/api/v1/sessions/{other['id']}/").status_code == 404
    partner_id = cast.partner.user.partner_id
    assert [r["username"] for r in _listed(admin, partner=str(partner_id))] == ["alice"]
    assert [r["username"] for r in _listed(admin, user="mallory")] == ["mallory"]
    alice.quit()
    mallory.quit()


def test_partner_token_and_auditor_cannot_disconnect(cast, gateway):
    ftp = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    auditor = client_for(make_user("audit-one", "auditor"), "read")
    row = _listed_with(auditor, cast.partner.username)
    url = f"/api/v1/sessions/{row['id']}/disconnect/"
    body = {"reason": "no"}
    assert auditor.post(url, body, format="json").status_code == 403
    partner = client_for(cast.partner.user, "read", "transfer")
    assert partner.post(url, body, format="json").status_code == 403
    assert GatewaySession.objects.get(session_id=row["id"]).disconnect_requested_at is None
    assert ftp.voidcmd("NOOP").startswith("200")
    ftp.quit()


def test_disconnect_needs_a_reason(cast, gateway):
    ftp = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    admin = client_for(cast.admin.user, "admin")
    row = _listed_with(admin, cast.partner.username)
    response = admin.post(f"/api/v1/sessions/{row['id']}/disconnect/", {}, format="json")
    assert response.status_code == 400 and "reason" in response.json()["errors"]
    ftp.quit()


def test_session_disappears_after_the_client_quits(cast, gateway):
    ftp = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    admin = client_for(cast.admin.user, "read")
    _listed_with(admin, cast.partner.username)
    ftp.quit()
    until(lambda: not GatewaySession.objects.exists(), what="session row deleted")
    assert _listed(admin) == []


def test_a_process_publishes_all_its_sessions_in_one_job_per_tick(cast, gateway):
    clients = [login(gateway.explicit_port, cast.partner.username, cast.partner.password)
               for _ in range(5)]
    admin = client_for(cast.admin.user, "read")
    until(lambda: len(_listed(admin)) == 5, what="five sessions listed")
    publisher = gateway.process.publisher
    before = publisher.jobs
    time.sleep(4.2)
    # Idle sessions: one job per 2 s tick for the whole process, not one per session.
    assert 1 <= publisher.jobs - before <= 3
    for ftp in clients:
        ftp.quit()


def _run_gateway_process(log: Path) -> subprocess.Popen[bytes]:
    """Start `manage.py run_gateway` (one process, explicit listener on any free port)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": current_database_url(), "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
           "MFT_DATA_DIR": str(settings.DATA_DIR), "MFT_BIND_ADDRESS": "127.0.0.1",
           "MFT_FTPS_PORT": "0", "MFT_FTPS_IMPLICIT_PORT": "off", "MFT_GATEWAY_WORKERS": "1",
           "MFT_PASSIVE_PORTS": "41300-41349"}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "manage.py", "run_gateway"], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def test_sessions_of_a_killed_gateway_process_are_not_listed_and_are_purged(cast, tmp_path):
    log = tmp_path / "gateway.log"
    process = _run_gateway_process(log)
    try:
        beat = until(lambda: ProcessHeartbeat.objects.filter(kind="gateway",
                                                             pid=process.pid).first(),
                     timeout=60, what=f"gateway heartbeat; log: {log}")
        ftp = login(beat.info["ports"]["explicit"], cast.partner.username,
                    cast.partner.password)
        admin = client_for(cast.admin.user, "read")
        row = _listed_with(admin, cast.partner.username, pid=process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        until(lambda: _session_of(admin, cast.partner.username) is None, timeout=15,
              what="killed gateway's session no longer listed")
        assert GatewaySession.objects.filter(session_id=row["id"]).exists()
        until(lambda: sessions.purge_dead(), timeout=15, what="dead gateway's rows purged")
        assert not GatewaySession.objects.filter(session_id=row["id"]).exists()
        ftp.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _states(count: int, user: Any) -> list[sessions.SessionState]:
    now = datetime.now(UTC)
    return [sessions.SessionState(
        session_id=f"{i:012x}", user_id=user.pk, username=user.username,
        partner_id=user.partner_id, remote_address="192.0.2.1", remote_port=40000 + i,
        implicit=False, tls_version="TLSv1.3", tls_cipher="TLS_AES_256_GCM_SHA384",
        started_at=now, last_command_at=now,
        transfer=sessions.TransferState("upload", f"/f{i}.bin", i, None, now))
        for i in range(count)]


def test_a_tick_with_200_sessions_is_a_few_queries_not_200(cast):
    name = "gateway@bench:1"
    heartbeat.beat(ProcessHeartbeat.Kind.GATEWAY, name)
    gateway = sessions.GatewayIdentity(name, "bench", 1)
    states = _states(200, cast.partner.user)
    with CaptureQueriesContext(connection) as written:
        sessions.publish(gateway, states, [])
    assert GatewaySession.objects.filter(gateway=name).count() == 200
    with CaptureQueriesContext(connection) as ended:
        sessions.publish(gateway, [], [s.session_id for s in states])
    assert not GatewaySession.objects.exists()
    # Upsert batches follow the database's parameter limit: one statement on PostgreSQL,
    # a handful under SQLite's 999 parameters; plus transaction and the requests read.
    limit = 4 if connection.vendor == "postgresql" else 10
    assert len(written) <= limit, [q["sql"][:80] for q in written.captured_queries]
    assert len(ended) <= 4, [q["sql"][:80] for q in ended.captured_queries]


def test_purge_keeps_live_gateways_and_fresh_rows(cast):
    heartbeat.beat(ProcessHeartbeat.Kind.GATEWAY, "gateway@live:1")
    live = sessions.GatewayIdentity("gateway@live:1", "live", 1)
    dead = sessions.GatewayIdentity("gateway@dead:2", "dead", 2)
    first, second = _states(2, cast.partner.user)
    sessions.publish(live, [first], [])
    sessions.publish(dead, [second], [])
    assert sessions.purge_dead() == 0  # the dead gateway's row is too fresh to judge
    GatewaySession.objects.filter(gateway=dead.name).update(
        updated_at=datetime(2020, 1, 1, tzinfo=UTC))
    assert sessions.purge_dead() == 1
    assert [s.gateway for s in sessions.live_sessions()] == [live.name]
