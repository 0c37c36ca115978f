"""The audit log is a hash chain: verify_audit names the first changed, deleted or inserted
event, and concurrent writers keep the chain intact."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from audit import chain
from audit.models import AuditEvent
from tests.tamper import tamper as _tamper

pytestmark = pytest.mark.django_db(transaction=True)


def _events(n: int) -> list[AuditEvent]:
    return [chain.append(actor=f"user{i}", action="test", outcome="info", details={"i": i})
            for i in range(n)]


def test_an_intact_chain_verifies():
    _events(5)
    count, broken = chain.verify()
    assert (count, broken) == (5, None)
    call_command("verify_audit")


def test_events_appended_together_are_stored_as_written_under_their_ids():
    with chain.appended_together():
        written = [chain.append(actor=f"user{i}", actor_id=i, source_ip="192.0.2.7",
                                protocol="ftps", action="upload", object_type="storedfile",
                                object_id=str(i), object_repr=f"/f{i}", outcome="success",
                                details={"bytes": i, "path": f"/f{i}"}) for i in range(3)]
    fields = ("created_at", "actor", "actor_id", "source_ip", "protocol", "action",
              "object_type", "object_id", "object_repr", "outcome", "details", "prev_hash",
              "hash")
    for event in written:
        stored = AuditEvent.objects.get(pk=event.pk)
        assert [getattr(stored, f) for f in fields] == [getattr(event, f) for f in fields]
    assert [e.pk for e in written] == sorted(e.pk for e in written)
    assert chain.verify() == (3, None)


def test_a_changed_event_is_named():
    events = _events(5)
    _tamper("UPDATE audit_auditevent SET actor = %s WHERE id = %s", ["mallory", events[2].pk])
    _, broken = chain.verify()
    assert broken is not None and broken.event_id == events[2].pk and "changed" in broken.reason


def test_a_deleted_event_is_named_by_its_successor():
    events = _events(5)
    _tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[2].pk])
    _, broken = chain.verify()
    assert broken is not None and broken.event_id == events[3].pk and "deleted" in broken.reason


def test_an_inserted_event_is_named():
    events = _events(3)
    forged = AuditEvent(created_at=events[1].created_at, actor="ghost", action="test",
                        outcome="info", details={}, prev_hash=events[0].hash, hash="f" * 64)
    forged.save()  # appended at the end with a forged link
    _, broken = chain.verify()
    assert broken is not None and broken.event_id == forged.pk


def test_deleting_the_newest_events_is_detected_by_the_head():
    events = _events(4)
    _tamper("DELETE FROM audit_auditevent WHERE id >= %s", [events[2].pk])
    _, broken = chain.verify()
    assert broken is not None and "newest events" in broken.reason


def test_verify_audit_exits_non_zero_on_a_break():
    events = _events(3)
    _tamper("UPDATE audit_auditevent SET outcome = %s WHERE id = %s", ["success", events[1].pk])
    with pytest.raises(CommandError, match=str(events[1].pk)):
        call_command("verify_audit")


def test_concurrent_writers_keep_the_chain_intact():
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(15):
                chain.append(actor=f"w{worker}", action="load", outcome="info", details={"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert chain.verify() == (60, None)
