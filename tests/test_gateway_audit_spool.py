"""The gateway's session events go through the durable audit spool (issue #3).

Refusals the loop cannot wait for reach the chain; an event spooled while the chain is
blocked survives SIGKILL and is written exactly once on the next start; the loop keeps
answering while the chain is blocked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection, transaction

from audit import chain, spool
from audit.events import Origin
from audit.models import AuditEvent
from tests.audit_log import wait_for_event
from tests.ftps_client import login, reply, stock_login
from tests.test_gateway_sigterm import GatewayChild
from tests.waiting import until

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def chain_blocked() -> Iterator[None]:
    """Hold the lock every chain append takes (advisory lock on PostgreSQL, the write lock
    of an IMMEDIATE transaction on SQLite) from another connection until the block ends."""
    held, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                chain._lock_head()
                held.set()
                release.wait(120)
                transaction.set_rollback(True)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failure.append(exc)
            held.set()
        finally:
            connection.close()

    holder = threading.Thread(target=hold, name="chain-blocker")
    holder.start()
    assert held.wait(30) and not failure, failure
    try:
        yield
    finally:
        release.set()
        holder.join(30)


def _spooled(action: str, outcome: str = "failure", timeout: float = 15) -> dict:
    """Wait until a spool file holds an event of this action and outcome; return it."""
    def probe() -> dict | None:
        for path in spool.directory().glob("*.jsonl"):
            for line in path.read_bytes().splitlines():
                record = json.loads(line)
                if (record["fields"]["action"], record["fields"]["outcome"]) == (action,
                                                                                outcome):
                    return {**record, "path": path}
        return None

    return until(probe, timeout=timeout, what=f"a spooled {action!r} event")


def _fail_control_handshake(port: int) -> None:
    """Ask for TLS on the control connection, then send something that is not TLS."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(b"AUTH TLS\r\n")
        assert reader.readline().startswith(b"234")
        sock.sendall(b"this is not a TLS ClientHello\r\n" * 4)
        try:
            assert sock.recv(1024) == b""  # the gateway drops the connection...
        except ConnectionResetError:
            pass  # ...or resets it, with our unread garbage still in its buffer


def _passive_port(answer: str) -> int:
    found = re.search(r"\(([\d,]+)\)", answer)
    assert found, answer
    numbers = [int(n) for n in found.group(1).split(",")]
    return numbers[4] * 256 + numbers[5]


# --- each refusal reaches the chain through the spool --------------------------------------

def test_data_connection_without_tls_resumption_is_recorded(partner, gateway):
    ftp = stock_login(gateway.explicit_port, partner.username, partner.password)
    try:
        with pytest.raises(ssl.SSLError):
            ftp.nlst()
        assert ftp.getmultiline().startswith("522")
    finally:
        ftp.close()
    event = wait_for_event(action="refused", details__command="data-tls")
    assert event.actor == "alice" and event.details["spool_id"]


def test_bounce_port_is_recorded(partner, gateway_factory):
    active = gateway_factory(active_mode=True)
    ftp = login(active.explicit_port, partner.username, partner.password)
    try:
        assert reply(ftp, "PORT 10,1,2,3,195,80").startswith("501")
    finally:
        ftp.quit()
    event = wait_for_event(action="refused", details__command="PORT")
    assert "10.1.2.3:50000" in event.details["reply"] and event.details["spool_id"]


def test_data_connection_from_another_address_is_recorded(partner, gateway):
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        port = _passive_port(reply(ftp, "PASV"))
        with socket.create_connection(("127.0.0.1", port), timeout=5,
                                      source_address=("127.0.0.2", 0)):
            assert ftp.getmultiline().startswith("425")
    finally:
        ftp.quit()
    event = wait_for_event(action="refused", details__command="data-address")
    assert "127.0.0.2" in event.details["reply"] and event.details["spool_id"]


def test_failed_control_tls_handshake_is_recorded(partner, gateway):
    _fail_control_handshake(gateway.explicit_port)
    event = wait_for_event(action="tls", outcome="failure")
    assert event.source_ip == "127.0.0.1" and event.details["error"]
    assert event.details["spool_id"]


# --- the loop never waits on the chain ------------------------------------------------------

def test_sessions_answer_while_the_chain_is_blocked(partner, gateway):
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        with chain_blocked():
            _fail_control_handshake(gateway.explicit_port)  # spooled, not written
            record = _spooled("tls")
            assert ftp.voidcmd("NOOP").startswith("200")
            assert not AuditEvent.objects.filter(details__spool_id=record["id"]).exists()
        event = wait_for_event(details__spool_id=record["id"], timeout=45)
        assert event.created_at.isoformat() == record["at"]  # when it happened, not later
    finally:
        ftp.quit()


# --- durability ---------------------------------------------------------------------------

def test_event_spooled_before_sigkill_is_written_once_on_restart(tmp_path):
    first = GatewayChild(_folder(tmp_path, "first"), workers=1)
    try:
        port = first.port()
        with chain_blocked():
            _fail_control_handshake(port)
            record = _spooled("tls")
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(30)
        assert not AuditEvent.objects.filter(details__spool_id=record["id"]).exists()
        second = GatewayChild(_folder(tmp_path, "second"), workers=1)
        try:
            second.port()  # it listens once the dead process's spool is replayed
            assert AuditEvent.objects.filter(details__spool_id=record["id"]).count() == 1
            assert not list(spool.directory().glob(f"{first.process.pid}-*"))
            second.process.send_signal(signal.SIGTERM)
            assert second.process.wait(60) == 0, second.log()
        finally:
            second.close()
    finally:
        first.close()
    assert chain.verify()[1] is None
    assert not list(spool.directory().glob("*.jsonl")), "a clean stop leaves no spool file"
    _assert_no_spool_id_twice()


def test_parent_replays_the_spool_of_a_killed_worker(tmp_path):
    gateway = GatewayChild(_folder(tmp_path, "gw"), workers=2)
    try:
        port = gateway.port()
        with chain_blocked():
            _fail_control_handshake(port)
            record = _spooled("tls")
            worker = int(record["path"].name.split("-")[0])
            assert worker != gateway.process.pid
            os.kill(worker, signal.SIGKILL)
        # The parent starts a new worker, then writes what the dead one left.
        event = wait_for_event(details__spool_id=record["id"], timeout=60)
        assert AuditEvent.objects.filter(details__spool_id=record["id"]).count() == 1
        assert event.action == "tls" and event.outcome == "failure"
        until(lambda: not record["path"].exists(), what="the dead worker's spool removed")
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(60) == 0, gateway.log()
    finally:
        gateway.close()
    assert chain.verify()[1] is None
    _assert_no_spool_id_twice()


def _folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def _assert_no_spool_id_twice() -> None:
    ids = Counter(AuditEvent.objects.filter(object_type="session")
                  .values_list("details__spool_id", flat=True))
    ids.pop(None, None)
    assert ids and max(ids.values()) == 1, ids


# --- no duplicates after a crash between commit and offset update -------------------------

def test_interrupted_drain_replays_without_duplicates(transactional_db, tmp_path):
    origin = Origin(source_ip="192.0.2.9", protocol="ftps", extra={"session": "s1"})
    owner = spool.AuditSpool(tmp_path)
    for action in ("connect", "tls", "refused"):
        owner.append("session", origin=origin, action=action, details={"n": action})
    assert spool.drain(owner.path) == 3
    # The crash: the batch is committed but the offset update never happened.
    spool._offset_path(owner.path).unlink()
    owner.append("session", origin=origin, action="disconnect")
    owner.close()  # the process is gone: its lock is released, the file stays

    assert owner.path.exists()
    assert spool.replay(tmp_path) == 1  # all four read again, three already written
    actions = Counter(AuditEvent.objects.filter(source_ip="192.0.2.9")
                      .values_list("action", flat=True))
    assert actions == {"connect": 1, "tls": 1, "refused": 1, "disconnect": 1}
    assert not os.listdir(tmp_path)
    assert chain.verify()[1] is None


def _drained_by(owner: spool.AuditSpool, actions: list[str], origin: Origin) -> list[str]:
    """Append session events and wait until the running drainer wrote them all."""
    ids = [owner.append("session", origin=origin, action=action) for action in actions]
    until(owner.drained, timeout=30, what="the spool drained")
    return ids


def test_drainer_does_not_look_in_the_chain_for_lines_after_its_own_offset(
        transactional_db, tmp_path, monkeypatch):
    lookups: list[int] = []
    look = spool._already_written
    monkeypatch.setattr(spool, "_already_written",
                        lambda records: lookups.append(len(records)) or look(records))
    origin = Origin(source_ip="192.0.2.10", protocol="ftps", extra={"session": "s2"})
    owner = spool.AuditSpool(tmp_path)
    drainer = spool.Drainer(owner)
    drainer.start()
    try:
        ids = [*_drained_by(owner, ["connect", "tls"], origin),
               *_drained_by(owner, ["login"], origin),
               *_drained_by(owner, ["disconnect"], origin)]
    finally:
        drainer.close(timeout=30)
    # The file is new and every drain of it succeeded: the offset is the drainer's own, so
    # no line after it can be in the chain already.
    assert lookups == []
    written = AuditEvent.objects.filter(source_ip="192.0.2.10")
    assert sorted(written.values_list("details__spool_id", flat=True)) == sorted(ids)


def test_drain_after_a_lost_offset_update_writes_each_event_once(
        transactional_db, tmp_path, monkeypatch):
    write_offset, failures = spool._write_offset, []

    def fail_once(path: Path, offset: int) -> None:
        if armed and not failures:
            failures.append(offset)  # the batch is committed; its offset never written
            raise OSError("disk full")
        write_offset(path, offset)

    armed: list[bool] = []

    monkeypatch.setattr(spool, "_write_offset", fail_once)
    origin = Origin(source_ip="192.0.2.11", protocol="ftps", extra={"session": "s3"})
    owner = spool.AuditSpool(tmp_path)
    drainer = spool.Drainer(owner)
    drainer.start()
    try:
        ids = _drained_by(owner, ["connect"], origin)  # cleanly
        armed.append(True)
        ids += _drained_by(owner, ["tls", "login"], origin)  # committed, offset lost, retried
        ids += _drained_by(owner, ["disconnect"], origin)
    finally:
        drainer.close(timeout=30)
    assert failures
    written = Counter(AuditEvent.objects.filter(source_ip="192.0.2.11")
                      .values_list("details__spool_id", flat=True))
    assert written == Counter(ids)
    assert chain.verify()[1] is None


def test_replay_skips_the_spool_of_a_live_process(transactional_db, tmp_path):
    live = spool.AuditSpool(tmp_path)
    live.append("session", origin=Origin(protocol="ftps"), action="connect")
    assert spool.replay(tmp_path) == 0
    assert live.path.exists() and not AuditEvent.objects.exists()
    assert spool.drain(live.path) == 1
    live.close()
    assert not live.path.exists()


def test_healthz_reports_the_spool_backlog(transactional_db):
    from mft import health

    live = spool.AuditSpool()
    try:
        live.append("session", origin=Origin(protocol="ftps"), action="connect")
        backlog = health.report()["components"]["audit_spool"]
        assert backlog["status"] == "ok"
        assert backlog["files"] >= 1 and backlog["pending_bytes"] > 0
    finally:
        spool.drain(live.path)
        live.close()


def test_replay_skips_a_torn_last_line(transactional_db, tmp_path):
    dead = spool.AuditSpool(tmp_path)
    dead.append("session", origin=Origin(protocol="ftps"), action="connect")
    with open(dead.path, "ab") as spool_file:
        spool_file.write(b'{"id":"half-written')  # the process died inside its write
    assert spool.drain(dead.path) == 1  # still being written, as far as a live drain knows
    assert spool._read_offset(dead.path) < dead.path.stat().st_size
    dead.close()
    assert spool.replay(tmp_path) == 0 and not os.listdir(tmp_path)
    assert AuditEvent.objects.filter(action="connect").count() == 1
