"""Encryption at rest: bytes on disk are never the plaintext; the master key rotates."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from audit.events import Origin
from transfers import atrest, storage, uploads

pytestmark = pytest.mark.django_db(transaction=True)


def _store(user, path: str, data: bytes):
    upload = uploads.begin_upload(user, path, origin=Origin())
    upload.write(data)
    return upload.finish()


def _read(path: str) -> bytes:
    reader = storage.open_reader(Path(path))
    try:
        return reader.read()
    finally:
        reader.close()


def test_stored_bytes_are_not_the_plaintext_and_read_back_as_it(cast):
    data = b"card 4111 1111 1111 1111 and some text\n" * 100
    stored = _store(cast.partner.user, "/secret.txt", data)
    raw = open(stored.storage_path, "rb").read()
    assert b"4111 1111" not in raw and atrest.is_encrypted(Path(
        stored.storage_path))
    assert _read(stored.storage_path) == data


def test_rotation_rewraps_every_file_and_old_files_still_read(cast):
    first = _store(cast.partner.user, "/a.txt", b"alpha")
    second = _store(cast.outsider.user, "/b.txt", b"bravo")
    before = storage.master_key().key_id
    call_command("rotate_master_key")
    after = storage.master_key().key_id
    assert after != before
    for stored, data in ((first, b"alpha"), (second, b"bravo")):
        assert atrest.key_ids(Path(stored.storage_path)) == [after]
        assert _read(stored.storage_path) == data
    newer = _store(cast.partner.user, "/c.txt", b"charlie")
    assert atrest.key_ids(Path(newer.storage_path)) == [after]


@pytest.fixture
def fresh_master_key():
    """Forget the cached master key before and after the test."""
    storage.master_key.cache_clear()
    yield
    storage.master_key.cache_clear()


def test_master_key_is_generated_once_into_the_data_dir_with_a_loud_note(
        settings, tmp_path, caplog, fresh_master_key):
    settings.MASTER_KEY, settings.MASTER_KEY_PATH = "", tmp_path / "master.key"
    with caplog.at_level(logging.WARNING, logger="transfers.storage"):
        first = storage.master_key()
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    assert "BACK IT UP" in caplog.text and "Losing it loses every stored file" in caplog.text
    caplog.clear()
    storage.master_key.cache_clear()
    assert storage.master_key().key_id == first.key_id  # read back, not generated again
    assert "BACK IT UP" not in caplog.text


def test_master_key_from_the_environment_wins_and_junk_is_refused(settings, tmp_path,
                                                                  fresh_master_key):
    raw = os.urandom(32)
    settings.MASTER_KEY = base64.b64encode(raw).decode()
    settings.MASTER_KEY_PATH = tmp_path / "master.key"
    assert storage.master_key().key_id == atrest.MasterKey(raw).key_id
    assert not (tmp_path / "master.key").exists()
    storage.master_key.cache_clear()
    settings.MASTER_KEY = base64.b64encode(raw[:16]).decode()
    with pytest.raises(ImproperlyConfigured, match="MFT_MASTER_KEY"):
        storage.master_key()
