"""Large transfers through the data channel's block path keep every byte and the hash.

Uploads gather several TLS records into one block per loop pass; binary downloads send
1 MiB plaintext blocks decrypted from the at-rest file. These tests check the bytes and
the SHA-256 end to end, across quota claims and across at-rest chunk and block borders.
"""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from accounts.models import User
from tests.ftps_client import login
from transfers import quota
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1024 * 1024
BIG = 64 * MIB + 12345  # not a multiple of a block, an at-rest chunk or a claim step


@pytest.fixture(scope="module")
def big_data() -> bytes:
    return os.urandom(BIG)


def _download(ftp, name: str, rest: int | None = None) -> bytes:
    received = bytearray()
    ftp.retrbinary(f"RETR {name}", received.extend, blocksize=MIB, rest=rest)
    return bytes(received)


def test_64_mib_upload_and_download_keep_the_sha256_with_quota_claims_interleaved(
    partner, gateway, big_data
):
    # A quota makes the upload claim a step (4 MiB) at a time while bytes arrive.
    User.objects.filter(pk=partner.user.pk).update(quota_bytes=BIG + 8 * MIB)
    digest = hashlib.sha256(big_data).hexdigest()
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        final = ftp.storbinary("STOR big.bin", io.BytesIO(big_data), blocksize=MIB)
        assert final.startswith("226") and digest in final
        assert ftp.size("big.bin") == BIG
        StoredFile.objects.filter(path="/big.bin").update(state=FileState.READY)
        downloaded = _download(ftp, "big.bin")
    finally:
        ftp.quit()
    assert len(downloaded) == BIG
    assert hashlib.sha256(downloaded).hexdigest() == digest
    assert quota.used_bytes(partner.user.pk) == BIG


def test_download_resumed_inside_a_block_sends_the_exact_tail(partner, gateway, big_data):
    data = big_data[: 5 * MIB + 777]
    offset = MIB + 256 * 1024 + 3  # inside a block and inside an at-rest chunk
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        ftp.storbinary("STOR part.bin", io.BytesIO(data), blocksize=MIB)
        StoredFile.objects.filter(path="/part.bin").update(state=FileState.READY)
        tail = _download(ftp, "part.bin", rest=offset)
    finally:
        ftp.quit()
    assert tail == data[offset:]


def test_upload_sent_in_one_burst_with_close_notify_is_complete(partner, gateway, big_data):
    # The client's last block and its close_notify arrive together: the bytes gathered
    # before the end of the stream must be written before the upload is finished.
    data = big_data[: 3 * MIB + 1]
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd("STOR burst.bin")
        conn.sendall(data)
        conn.unwrap()
        conn.close()
        final = ftp.getmultiline()
    finally:
        ftp.quit()
    assert final.startswith("226") and hashlib.sha256(data).hexdigest() in final
    stored = StoredFile.objects.get(path="/burst.bin", state=FileState.RECEIVED)
    assert stored.size == len(data)


def test_ascii_download_and_listing_still_use_the_old_path(partner, gateway):
    text = b"one\r\ntwo\r\n" * 1000
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        ftp.storbinary("STOR notes.txt", io.BytesIO(text))
        StoredFile.objects.filter(path="/notes.txt").update(state=FileState.READY)
        lines: list[str] = []
        ftp.retrlines("RETR notes.txt", lines.append)
        names = ftp.nlst()
    finally:
        ftp.quit()
    assert lines == ["one", "two"] * 1000
    assert "notes.txt" in names
