"""Service level: an upload lands against whatever holds its name when it finishes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from audit.events import SYSTEM
from mft.errors import PermissionDenied
from transfers import storage
from transfers.models import FileState, StoredFile
from transfers.uploads import begin_upload

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
