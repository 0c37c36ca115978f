"""Service level: what landing an upload writes, and that a free name costs no extra query."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit import chain
from audit.events import SYSTEM
from audit.models import AuditEvent, ChainHead
from mft.errors import PermissionDenied
from transfers import storage
from transfers.models import FileState, StoredFile
from transfers.uploads import begin_upload

pytestmark = pytest.mark.django_db(transaction=True)


def _land(user, virtual: str, data: bytes = b"payload") -> StoredFile:
    upload = begin_upload(user, virtual, origin=SYSTEM)
    upload.write(data)
    return upload.finish()


def _statements(queries: CaptureQueriesContext, prefix: str) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].upper().startswith(prefix)]


def _ghost_row(user, virtual: str) -> StoredFile:
    """A live row whose bytes are gone from disk (removed by hand, a lost volume)."""
    return StoredFile.objects.create(
        owner=user,
        owner_username=user.username,
        partner_id=user.partner_id,
        path=virtual,
        size=1,
        sha256="0" * 64,
        state=FileState.RECEIVED,
        storage_path=str(Path(user.home_dir) / virtual.lstrip("/")),
    )


def test_upload_landing_appends_upload_then_received_to_an_intact_chain(partner):
    stored = _land(partner.user, "/chained.bin")
    upload, received = AuditEvent.objects.order_by("-id")[:2][::-1]
    assert (upload.action, received.action) == ("upload", "pipeline.received")
    assert upload.object_id == received.object_id == str(stored.pk)
    assert received.prev_hash == upload.hash
    head = ChainHead.objects.get(pk=1)
    assert (head.last_id, head.last_hash) == (received.pk, received.hash)
    assert chain.verify()[1] is None


def test_upload_landing_moves_the_chain_head_once(partner):
    upload = begin_upload(partner.user, "/once.bin", origin=SYSTEM)
    upload.write(b"payload")
    with CaptureQueriesContext(connection) as queries:
        upload.finish()
    assert len(_statements(queries, 'UPDATE "AUDIT_CHAINHEAD"')) == 1


def test_upload_at_a_free_name_lands_without_updating_stored_files(partner):
    upload = begin_upload(partner.user, "/free.bin", origin=SYSTEM)
    upload.write(b"payload")
    with CaptureQueriesContext(connection) as queries:
        upload.finish()
    assert _statements(queries, 'UPDATE "TRANSFERS_STOREDFILE"') == []


def test_upload_at_a_free_name_retires_a_live_row_left_without_bytes(partner):
    ghost = _ghost_row(partner.user, "/ghost.bin")
    stored = _land(partner.user, "/ghost.bin", b"new bytes")
    ghost.refresh_from_db()
    assert ghost.state == FileState.DELETED
    assert StoredFile.objects.exclude(state=FileState.DELETED).get().pk == stored.pk
    assert Path(stored.storage_path).is_file()


def test_upload_without_overwrite_cannot_replace_a_live_row_left_without_bytes(partner):
    partner.user.permissions = ["list", "download", "upload"]
    partner.user.save(update_fields=["permissions"])
    ghost = _ghost_row(partner.user, "/ghost.bin")
    upload = begin_upload(partner.user, "/ghost.bin", origin=SYSTEM)
    upload.write(b"new bytes")
    with pytest.raises(PermissionDenied):
        upload.finish()
    assert StoredFile.objects.exclude(state=FileState.DELETED).get().pk == ghost.pk
    assert not (Path(partner.user.home_dir) / "ghost.bin").exists()
    assert not any((Path(partner.user.home_dir) / storage.TEMP_DIRNAME).iterdir())


def test_events_appended_together_are_chained_in_order_when_the_block_ends():
    with chain.appended_together():
        first = chain.append(actor="a", action="first", outcome="info")
        second = chain.append(actor="a", action="second", outcome="info")
        assert first.pk is None and not AuditEvent.objects.filter(action="first").exists()
    assert first.pk is not None and second.pk is not None
    assert second.prev_hash == first.hash
    assert ChainHead.objects.get(pk=1).last_id == second.pk
    assert chain.verify() == (2, None)


def test_events_appended_together_are_dropped_when_the_block_raises():
    with pytest.raises(RuntimeError), chain.appended_together():
        chain.append(actor="a", action="lost", outcome="info")
        raise RuntimeError("boom")
    assert not AuditEvent.objects.exists()
    chain.append(actor="a", action="kept", outcome="info")
    assert chain.verify() == (1, None)
