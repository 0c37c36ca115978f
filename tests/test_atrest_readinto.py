"""EncryptedReader.readinto decrypts whole chunks straight into the caller's buffer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from transfers.atrest import (
    CHUNK_OVERHEAD,
    CHUNK_SIZE,
    HEADER_SIZE,
    EncryptedReader,
    EncryptedWriter,
    IntegrityError,
    MasterKey,
)

CHUNK_ON_DISK = CHUNK_SIZE + CHUNK_OVERHEAD


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()


def payload(size: int) -> bytes:
    return random.Random(0).randbytes(size)


def write_file(path: Path, master: MasterKey, data: bytes, piece: int = 65536) -> None:
    with EncryptedWriter(path, master) as w:
        for i in range(0, len(data), piece):
            w.write(data[i : i + piece])


@pytest.mark.parametrize("start", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 5])
def test_readinto_with_blocks_larger_than_a_chunk_gives_the_plaintext(
    tmp_path: Path, master: MasterKey, start: int
) -> None:
    # Whole chunks are decrypted straight into the caller's buffer, partial ones through
    # the cache: both, in any mix, must give the same bytes.
    data = payload(9 * CHUNK_SIZE + 333)
    path = tmp_path / "f.enc"
    write_file(path, master, data)
    out = bytearray()
    buf = memoryview(bytearray(4 * CHUNK_SIZE))
    with EncryptedReader(path, master) as r:
        r.seek(start)
        while n := r.readinto(buf):
            out += buf[:n]
    assert out == data[start:]


def test_readinto_of_a_tampered_whole_chunk_raises_integrity_error(
    tmp_path: Path, master: MasterKey
) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, payload(4 * CHUNK_SIZE))
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE + 2 * CHUNK_ON_DISK + 99] ^= 0x01  # inside chunk 2
    path.write_bytes(bytes(raw))
    buf = bytearray(4 * CHUNK_SIZE)
    with EncryptedReader(path, master) as r:
        assert r.readinto(memoryview(buf)[: 2 * CHUNK_SIZE]) == 2 * CHUNK_SIZE
        with pytest.raises(IntegrityError, match="chunk 2"):
            r.readinto(buf)
        assert r.tell() == 2 * CHUNK_SIZE  # nothing of the forged chunk was counted as read
