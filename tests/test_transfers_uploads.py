"""Service level: an upload lands against whatever holds its name when it finishes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from audit.events import SYSTEM
from audit.models import AuditEvent
from mft.errors import PermissionDenied
from transfers import storage
from transfers.models import FileState, StoredFile
from transfers.uploads import begin_upload, begin_upload_offline

pytestmark = pytest.mark.django_db(transaction=True)


def _plaintext(path: Path) -> bytes:
    reader = storage.open_reader(path)
    try:
        return reader.read()
    finally:
        reader.close()


def test_later_upload_replaces_a_file_landed_after_it_began(partner):
    first = begin_upload(partner.user, "/same.bin", origin=SYSTEM)
    second = begin_upload(partner.user, "/same.bin", origin=SYSTEM)
    first.write(b"first")
    second.write(b"second")
    first.finish()
    stored = second.finish()
    live = StoredFile.objects.exclude(state=FileState.DELETED).get()
    assert live.pk == stored.pk and live.sha256 == hashlib.sha256(b"second").hexdigest()
    assert _plaintext(Path(live.storage_path)) == b"second"


def test_upload_without_overwrite_cannot_replace_a_file_landed_after_it_began(partner):
    partner.user.permissions = ["list", "download", "upload"]
    partner.user.save(update_fields=["permissions"])
    first = begin_upload(partner.user, "/same.bin", origin=SYSTEM)
    second = begin_upload(partner.user, "/same.bin", origin=SYSTEM)
    first.write(b"first")
    second.write(b"second")
    landed = first.finish()
    with pytest.raises(PermissionDenied):
        second.finish()
    live = StoredFile.objects.exclude(state=FileState.DELETED).get()
    assert live.pk == landed.pk
    assert _plaintext(Path(live.storage_path)) == b"first"
    assert not any((Path(partner.user.home_dir) / storage.TEMP_DIRNAME).iterdir())


def test_new_file_at_a_free_name_begins_without_a_query(partner, django_assert_num_queries):
    with django_assert_num_queries(0):
        upload = begin_upload_offline(partner.user, "/fresh.bin", origin=SYSTEM)
    assert upload is not None
    upload.write(b"fresh")
    stored = upload.finish()
    assert stored.sha256 == hashlib.sha256(b"fresh").hexdigest()
    assert _plaintext(Path(stored.storage_path)) == b"fresh"


def test_offline_begin_declines_a_user_with_a_byte_quota(partner):
    partner.user.quota_bytes = 10 * 1024 * 1024
    partner.user.save(update_fields=["quota_bytes"])
    assert begin_upload_offline(partner.user, "/counted.bin", origin=SYSTEM) is None


def test_offline_begin_declines_a_user_with_a_file_quota(partner):
    partner.user.quota_files = 10
    partner.user.save(update_fields=["quota_files"])
    assert begin_upload_offline(partner.user, "/counted.bin", origin=SYSTEM) is None


def test_offline_begin_declines_a_name_with_a_file_on_disk(partner):
    begin_upload(partner.user, "/taken.bin", origin=SYSTEM).finish()
    assert begin_upload_offline(partner.user, "/taken.bin", origin=SYSTEM) is None


def test_offline_begin_declines_a_resume(partner):
    assert begin_upload_offline(partner.user, "/part.bin", origin=SYSTEM, append=True) is None
    assert begin_upload_offline(partner.user, "/part.bin", origin=SYSTEM, offset=5) is None


def test_offline_begin_leaves_a_refusal_to_begin_upload(partner):
    partner.user.permissions = ["list", "download"]
    partner.user.save(update_fields=["permissions"])
    before = AuditEvent.objects.count()
    assert begin_upload_offline(partner.user, "/refused.bin", origin=SYSTEM) is None
    assert AuditEvent.objects.count() == before
    assert not any((Path(partner.user.home_dir) / storage.TEMP_DIRNAME).glob("*.part"))
