"""A successful FTPS login is audited through the gateway's durable spool (issue #9).

The `login` event is on the disk (fdatasync) before the client hears 230, so it survives
SIGKILL right after the reply and is written to the chain exactly once at the next start.
Refused logins are still written to the chain before their reply.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from accounts import services
from audit import chain, spool
from audit.events import Origin
from audit.models import AuditEvent
from mft.errors import LoginRefused
from tests.audit_log import wait_for_event
from tests.ftps_client import login
from tests.test_gateway_audit_spool import chain_blocked
from tests.test_gateway_sigterm import GatewayChild

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = Origin(source_ip="192.0.2.44", protocol="ftps", extra={"session": "s-login"})
# The fields a login event carries whichever way it reached the chain.
COMPARED = ("action", "outcome", "actor", "actor_id", "source_ip", "protocol", "object_type",
            "object_id", "object_repr")


def _attempt(partner: Any, password: str | None = None) -> services.LoginAttempt:
    return services.LoginAttempt(username=partner.username,
                                 password=password or partner.password, protocol="ftps",
                                 source_ip=ORIGIN.source_ip)


def _spooled_logins(folder: Path) -> list[dict[str, Any]]:
    """Return the login records in every spool file of a folder."""
    found = []
    for path in folder.glob(f"*{spool.SUFFIX}"):
        for line in path.read_bytes().splitlines():
            record = json.loads(line)
            if record["kind"] == "login":
                found.append({**record, "path": path})
    return found


def _logins() -> Any:
    return AuditEvent.objects.filter(action="login", outcome="success")


# --- service level -------------------------------------------------------------------------

def test_login_with_a_spool_writes_the_event_through_it(partner, tmp_path):
    owner = spool.AuditSpool(tmp_path)
    try:
        user = services.login(_attempt(partner), origin=ORIGIN, spool=owner)
        assert not _logins().exists()  # on the disk, not yet in the chain
        [record] = _spooled_logins(tmp_path)
        assert spool.drain(owner.path) == 1
    finally:
        owner.close()
    spooled = _logins().get()
    assert spooled.details["spool_id"] == record["id"]
    assert spooled.created_at.isoformat() == record["at"]  # when it happened
    services.login(_attempt(partner), origin=ORIGIN)  # no spool: written at once
    direct = _logins().exclude(pk=spooled.pk).get()
    assert [getattr(spooled, f) for f in COMPARED] == [getattr(direct, f) for f in COMPARED]
    assert spooled.object_id == str(user.pk) and spooled.details["method"] == "password"
    assert spooled.details["session"] == direct.details["session"] == "s-login"
    assert chain.verify()[1] is None


def test_a_spooled_login_is_on_the_disk_before_login_returns(partner, tmp_path, monkeypatch):
    owner = spool.AuditSpool(tmp_path)
    synced: list[int] = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        real_fdatasync(fd)
        synced.append(os.fstat(fd).st_size)

    monkeypatch.setattr(spool.os, "fdatasync", fdatasync)
    try:
        services.login(_attempt(partner), origin=ORIGIN, spool=owner)
        assert synced == [owner.path.stat().st_size]  # the whole file, login line included
    finally:
        owner.close()


def test_a_refused_login_is_written_to_the_chain_at_once(partner, tmp_path):
    owner = spool.AuditSpool(tmp_path)
    try:
        with pytest.raises(LoginRefused):
            services.login(_attempt(partner, "wrong-password-1"), origin=ORIGIN, spool=owner)
        assert AuditEvent.objects.filter(action="login", outcome="failure",
                                         details__reason="wrong password").exists()
        assert not _spooled_logins(tmp_path)
    finally:
        owner.close()


def test_a_closed_spool_falls_back_to_the_chain(partner, tmp_path):
    owner = spool.AuditSpool(tmp_path)
    owner.close()
    services.login(_attempt(partner), origin=ORIGIN, spool=owner)
    assert _logins().get().details.get("spool_id") is None


# --- end to end: SIGKILL right after the reply ---------------------------------------------

def test_login_event_survives_sigkill_after_the_reply_and_is_written_once(partner, tmp_path):
    folder = tmp_path / "first"
    folder.mkdir()
    first = GatewayChild(folder, workers=1)
    try:
        port = first.port()
        # A first login moves last_login, so the one below writes nothing to the database.
        login(port, partner.username, partner.password).quit()
        wait_for_event(action="login", outcome="success", actor=partner.username, timeout=30)
        with chain_blocked():
            ftp = login(port, partner.username, partner.password)  # 230 while blocked
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(30)
            ftp.close()
        record = _unwritten_login(first.process.pid)
        assert record["fields"]["username"] == partner.username
        assert not AuditEvent.objects.filter(details__spool_id=record["id"]).exists()
        second_folder = tmp_path / "second"
        second_folder.mkdir()
        second = GatewayChild(second_folder, workers=1)
        try:
            second.port()  # it listens once the dead process's spool is replayed
            event = AuditEvent.objects.get(details__spool_id=record["id"])
            second.process.send_signal(signal.SIGTERM)
            assert second.process.wait(60) == 0, second.log()
        finally:
            second.close()
    finally:
        first.close()
    assert (event.action, event.outcome, event.actor) == ("login", "success",
                                                          partner.username)
    assert event.created_at.isoformat() == record["at"]
    assert AuditEvent.objects.filter(details__spool_id=record["id"]).count() == 1
    assert not record["path"].exists()
    assert chain.verify()[1] is None


def _unwritten_login(pid: int) -> dict[str, Any]:
    """Return the one login record a process left in its spool file that is not in the
    chain."""
    written = set(AuditEvent.objects.filter(action="login").values_list("details__spool_id",
                                                                        flat=True))
    left = [r for r in _spooled_logins(spool.directory())
            if r["path"].name.startswith(f"{pid}-") and r["id"] not in written]
    assert len(left) == 1, left
    return left[0]
