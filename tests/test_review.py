"""Admins release or delete files the pipeline stopped, always with a reason, audited."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.events import Origin
from audit.models import AuditEvent
from mft.errors import InvalidInput
from transfers import pipeline, review, uploads
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)
ADMIN = Origin(actor="root-admin", protocol="web")


def _store(user, path: str, data: bytes = b"payload") -> StoredFile:
    upload = uploads.begin_upload(user, path, origin=Origin())
    upload.write(data)
    return upload.finish()


def test_oversize_file_is_held_for_an_admin_and_released_with_a_reason(cast, settings):
    settings.SCAN_MAX_BYTES = 3
    settings.CLAMD_ADDRESS = "tcp://127.0.0.1:9"
    stored = _store(cast.partner.user, "/big.txt")
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.HELD and "scan limit" in stored.state_reason
    with pytest.raises(InvalidInput):
        review.release_held(stored, reason=" ", origin=ADMIN)
    review.release_held(stored, reason="known partner batch", origin=ADMIN)
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.READY
    event = AuditEvent.objects.get(action="review.release")
    assert event.details["reason"] == "known partner batch" and event.actor == "root-admin"


def test_oversize_file_is_rejected_when_the_policy_says_so(cast, settings):
    settings.SCAN_MAX_BYTES = 3
    settings.SCAN_OVERSIZE_POLICY = "reject"
    settings.CLAMD_ADDRESS = "tcp://127.0.0.1:9"
    stored = _store(cast.partner.user, "/big.txt")
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.REJECTED
    assert not Path(stored.storage_path).exists()


def _quarantined(cast) -> StoredFile:
    stored = _store(cast.partner.user, "/fp.txt")
    quarantine = Path(stored.storage_path).with_name("moved.bin")
    Path(stored.storage_path).rename(quarantine)
    StoredFile.objects.filter(pk=stored.pk).update(state=FileState.INFECTED,
                                                   storage_path=str(quarantine),
                                                   scan_signature="Test.Sig")
    stored.refresh_from_db()
    return stored


def test_quarantined_file_released_returns_to_the_home_ready(cast):
    stored = review.release_quarantined(_quarantined(cast), reason="false positive",
                                        origin=ADMIN)
    assert stored.state == FileState.READY
    assert Path(stored.storage_path) == uploads.home_of(cast.partner.user) / "fp.txt"
    event = AuditEvent.objects.get(action="quarantine.release")
    assert event.details["reason"] == "false positive" and event.actor == "root-admin"
    assert (event.details["before"]["state"], event.details["after"]["state"]) == \
        (FileState.INFECTED, FileState.READY)


def test_quarantined_file_deleted_leaves_no_bytes(cast):
    stored = _quarantined(cast)
    review.delete_stopped(stored, reason="confirmed malware", origin=ADMIN)
    stored.refresh_from_db()
    assert stored.state == FileState.DELETED and not Path(stored.storage_path).exists()
    event = AuditEvent.objects.get(action="review.delete", object_id=str(stored.pk))
    assert event.details["reason"] == "confirmed malware" and event.actor == "root-admin"
    assert (event.details["before"]["state"], event.details["after"]["state"]) == \
        (FileState.INFECTED, FileState.DELETED)


def test_stuck_files_are_reported_and_the_command_exits_non_zero(cast):
    stored = _store(cast.partner.user, "/stuck.txt")
    StoredFile.objects.filter(pk=stored.pk).update(
        state_changed_at=timezone.now() - timedelta(hours=3))
    assert [f.pk for f in pipeline.stuck_files(3600)] == [stored.pk]
    with pytest.raises(CommandError):
        call_command("report_stuck_files", "--older-than", "3600")
