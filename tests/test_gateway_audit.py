"""End-to-end: a gateway session leaves a complete, unbroken trail in the audit log."""

from __future__ import annotations

import io

import pytest

from audit import chain
from audit.models import AuditEvent
from tests.audit_log import wait_for_count, wait_for_event
from tests.ftps_client import ResumingFTP, client_context, login, reply
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

MODES = pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])


def _session(port: int, partner, *, implicit: bool = False) -> None:
    """Log in, upload, download, rename, delete, get one refusal, and quit."""
    ftp = login(port, partner.username, partner.password, implicit=implicit)
    ftp.voidcmd("TYPE I")
    ftp.storbinary("STOR a.txt", io.BytesIO(b"audit me"))
    StoredFile.objects.filter(path="/a.txt").update(state=FileState.READY)
    ftp.retrbinary("RETR a.txt", lambda block: None)
    ftp.rename("a.txt", "b.txt")
    assert reply(ftp, "CCC").startswith("534")
    ftp.delete("b.txt")
    ftp.quit()


@MODES
def test_every_step_of_a_session_is_recorded(partner, gateway, implicit):
    _session(gateway.port(implicit), partner, implicit=implicit)
    wait_for_event(action="disconnect", actor="alice")
    wait_for_event(action="download", actor="alice")
    recorded = set(AuditEvent.objects.filter(protocol="ftps").values_list("action", "outcome"))
    assert {("connect", "info"), ("tls", "info"), ("login", "success"), ("upload", "success"),
            ("download", "success"), ("rename", "success"), ("refused", "failure"),
            ("delete", "success"), ("disconnect", "info")} <= recorded, recorded


def test_every_session_event_names_the_session_and_address(partner, gateway):
    _session(gateway.explicit_port, partner)
    wait_for_event(action="disconnect", actor="alice")
    events = AuditEvent.objects.filter(protocol="ftps")
    sessions = {event.details.get("session") for event in events}
    assert len(sessions) == 1 and None not in sessions
    assert set(events.values_list("source_ip", flat=True)) == {"127.0.0.1"}


def test_file_events_carry_bytes_and_sha256(partner, gateway):
    _session(gateway.explicit_port, partner)
    upload = wait_for_event(action="upload", outcome="success")
    download = wait_for_event(action="download", outcome="success")
    stored = StoredFile.objects.get()
    assert upload.details["sha256"] == download.details["sha256"] == stored.sha256
    assert upload.details["bytes"] == download.details["bytes"] == len(b"audit me")


def test_connect_and_disconnect_are_recorded_without_login(partner, gateway):
    ftp = ResumingFTP(context=client_context(), timeout=15)
    ftp.connect("127.0.0.1", gateway.explicit_port)
    ftp.quit()
    assert wait_for_event(action="connect", object_type="session")
    disconnect = wait_for_event(action="disconnect", object_type="session")
    assert disconnect.actor == ""


def test_refused_login_is_recorded_with_reason_and_address(partner, gateway):
    ftp = ResumingFTP(context=client_context(), timeout=15)
    ftp.connect("127.0.0.1", gateway.explicit_port)
    ftp.auth()
    reply(ftp, "USER alice")
    assert reply(ftp, "PASS wrong-password").startswith("530")
    ftp.close()
    event = wait_for_event(action="login", outcome="failure")
    assert (event.actor, event.source_ip, event.details["reason"]) == \
        ("alice", "127.0.0.1", "wrong password")
    assert "wrong-password" not in str(event.details)


def test_audit_chain_is_unbroken_after_sessions(partner, gateway):
    for implicit in (False, True):
        _session(gateway.port(implicit), partner, implicit=implicit)
    wait_for_count(2, action="disconnect", actor="alice")
    checked, broken = chain.verify()
    assert broken is None
    assert checked == AuditEvent.objects.count() > 0


def test_a_refusal_is_recorded_before_its_reply(partner, gateway):
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        assert reply(ftp, "CCC").startswith("534")
        # No waiting: security events are written before the client hears the refusal.
        assert AuditEvent.objects.filter(action="refused", details__command="CCC").exists()
    finally:
        ftp.quit()
