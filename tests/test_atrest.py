"""Behaviour of streaming encryption at rest (transfers.atrest)."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

# Runs with `-p no:django`, where nothing puts the repo root on sys.path for us.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from transfers import atrest  # noqa: E402
from transfers.atrest import (  # noqa: E402
    CHUNK_OVERHEAD,
    CHUNK_SIZE,
    HEADER_SIZE,
    NONCE_SIZE,
    AtRestError,
    EncryptedReader,
    EncryptedWriter,
    IntegrityError,
    MasterKey,
    is_encrypted,
    key_ids,
    plaintext_size,
    rewrap,
)

CHUNK_ON_DISK = CHUNK_SIZE + CHUNK_OVERHEAD


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def write_file(path: Path, master: MasterKey, data: bytes, piece: int = 65536) -> None:
    with EncryptedWriter(path, master) as w:
        for i in range(0, len(data), piece):
            w.write(data[i : i + piece])


def read_file(path: Path, master: MasterKey) -> bytes:
    with EncryptedReader(path, master) as r:
        return r.read()


def chunk_nonces(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    return [raw[i : i + NONCE_SIZE] for i in range(HEADER_SIZE, len(raw), CHUNK_ON_DISK)]


def chunks(raw: bytes) -> list[bytes]:
    return [raw[i : i + CHUNK_ON_DISK] for i in range(HEADER_SIZE, len(raw), CHUNK_ON_DISK)]


@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 5 * 1024 * 1024 + 123],
)
def test_round_trip_preserves_bytes(tmp_path: Path, master: MasterKey, size: int) -> None:
    data = payload(size)
    path = tmp_path / "f.enc"
    write_file(path, master, data)
    assert read_file(path, master) == data


def test_round_trip_with_one_large_write(tmp_path: Path, master: MasterKey) -> None:
    data = payload(3 * CHUNK_SIZE + 7)
    path = tmp_path / "f.enc"
    with EncryptedWriter(path, master) as w:
        assert w.write(memoryview(data)) == len(data)
        assert w.plaintext_size == len(data)
    assert read_file(path, master) == data


def test_round_trip_with_tiny_writes(tmp_path: Path, master: MasterKey) -> None:
    data = payload(CHUNK_SIZE + 5000)
    path = tmp_path / "f.enc"
    write_file(path, master, data, piece=997)
    assert read_file(path, master) == data


def test_bytes_on_disk_do_not_contain_plaintext(tmp_path: Path, master: MasterKey) -> None:
    marker = b"TOP-SECRET-PAYROLL-RECORD;" * 64
    path = tmp_path / "f.enc"
    write_file(path, master, marker * 200)
    raw = path.read_bytes()
    assert b"TOP-SECRET" not in raw
    assert is_encrypted(path)


def test_is_encrypted_is_false_for_plain_files(tmp_path: Path) -> None:
    path = tmp_path / "plain.txt"
    path.write_bytes(b"hello world")
    assert not is_encrypted(path)


def test_plaintext_size_matches_without_decryption(tmp_path: Path, master: MasterKey) -> None:
    for size in (0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 99):
        path = tmp_path / f"{size}.enc"
        write_file(path, master, payload(size))
        # Garble every chunk: plaintext_size must not decrypt anything.
        raw = bytearray(path.read_bytes())
        for i in range(HEADER_SIZE + NONCE_SIZE, len(raw), CHUNK_ON_DISK):
            raw[i] ^= 0xFF
        path.write_bytes(bytes(raw))
        assert plaintext_size(path) == size


def test_reader_reports_plaintext_size(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, payload(CHUNK_SIZE + 10))
    with EncryptedReader(path, master) as r:
        assert r.plaintext_size == CHUNK_SIZE + 10


def test_seek_to_arbitrary_offsets(tmp_path: Path, master: MasterKey) -> None:
    data = payload(4 * CHUNK_SIZE + 321)
    path = tmp_path / "f.enc"
    write_file(path, master, data)
    rng = random.Random(1)
    offsets = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, 3 * CHUNK_SIZE + 5, len(data) - 1, len(data)]
    offsets += [rng.randrange(len(data)) for _ in range(50)]
    with EncryptedReader(path, master) as r:
        for off in offsets:
            n = rng.choice([1, 100, CHUNK_SIZE, 2 * CHUNK_SIZE + 3])
            assert r.seek(off) == off
            assert r.read(n) == data[off : off + n]
            assert r.tell() == min(off + n, len(data))


def test_seek_past_end_reads_nothing(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, b"abc")
    with EncryptedReader(path, master) as r:
        r.seek(10)
        assert r.read() == b""


def test_readinto_fills_caller_buffer(tmp_path: Path, master: MasterKey) -> None:
    data = payload(2 * CHUNK_SIZE + 17)
    path = tmp_path / "f.enc"
    write_file(path, master, data)
    out = bytearray()
    buf = bytearray(100_000)
    with EncryptedReader(path, master) as r:
        while n := r.readinto(buf):
            out += buf[:n]
    assert out == data


def test_append_resume_gives_identical_bytes(tmp_path: Path, master: MasterKey) -> None:
    data = payload(3 * CHUNK_SIZE + 4321)
    path = tmp_path / "f.enc"
    cut = CHUNK_SIZE + 1000  # interrupted mid-chunk
    write_file(path, master, data[:cut])
    with EncryptedWriter(path, master, append=True) as w:
        assert w.plaintext_size == cut
        w.write(data[cut:])
    assert read_file(path, master) == data


def test_append_resume_after_exact_chunk_boundary(tmp_path: Path, master: MasterKey) -> None:
    data = payload(3 * CHUNK_SIZE)
    path = tmp_path / "f.enc"
    write_file(path, master, data[: 2 * CHUNK_SIZE])
    with EncryptedWriter(path, master, append=True) as w:
        w.write(data[2 * CHUNK_SIZE :])
    assert read_file(path, master) == data


def test_append_to_missing_file_creates_it(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    with EncryptedWriter(path, master, append=True) as w:
        w.write(b"hello")
    assert read_file(path, master) == b"hello"


def test_resumed_file_never_reuses_a_nonce(tmp_path: Path, master: MasterKey) -> None:
    data = payload(4 * CHUNK_SIZE + 10)
    path = tmp_path / "f.enc"
    cut = 2 * CHUNK_SIZE + 500
    write_file(path, master, data[:cut])
    before = chunk_nonces(path)
    for step in range(cut, len(data), CHUNK_SIZE // 2):  # many short resumes
        with EncryptedWriter(path, master, append=True) as w:
            w.write(data[step : step + CHUNK_SIZE // 2])
    after = chunk_nonces(path)
    assert read_file(path, master) == data
    assert len(set(after)) == len(after)
    # The rewritten tail chunk got a fresh nonce, not the one of the chunk it replaced.
    assert after[2] != before[2]
    assert after[:2] == before[:2]  # untouched chunks are kept byte for byte


def test_interrupted_upload_is_valid_and_resumable(tmp_path: Path, master: MasterKey) -> None:
    data = payload(CHUNK_SIZE * 2 + 99)
    path = tmp_path / "f.enc"
    with pytest.raises(ConnectionError), EncryptedWriter(path, master) as w:
        w.write(data[: CHUNK_SIZE + 7])
        raise ConnectionError("client went away")
    assert read_file(path, master) == data[: CHUNK_SIZE + 7]
    with EncryptedWriter(path, master, append=True) as w:
        w.write(data[CHUNK_SIZE + 7 :])
    assert read_file(path, master) == data


@pytest.mark.parametrize(
    "keep", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 50]
)
def test_offset_resume_keeps_prefix_and_drops_tail(
    tmp_path: Path, master: MasterKey, keep: int
) -> None:
    old = payload(2 * CHUNK_SIZE + 50, seed=1)
    new_tail = payload(CHUNK_SIZE + 3, seed=2)
    path = tmp_path / "f.enc"
    write_file(path, master, old)
    with EncryptedWriter(path, master, offset=keep) as w:
        assert w.plaintext_size == keep
        w.write(new_tail)
    expected = old[:keep] + new_tail
    assert read_file(path, master) == expected
    assert plaintext_size(path) == len(expected)


def test_offset_resume_without_writing_truncates(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    data = payload(CHUNK_SIZE + 100)
    write_file(path, master, data)
    EncryptedWriter(path, master, offset=10).close()
    assert read_file(path, master) == data[:10]


def test_offset_beyond_size_is_rejected(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, b"12345")
    with pytest.raises(ValueError, match="beyond"):
        EncryptedWriter(path, master, offset=6)
    assert read_file(path, master) == b"12345"


def test_reordered_chunks_raise_integrity_error(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, payload(3 * CHUNK_SIZE + 10))
    raw = path.read_bytes()
    c = chunks(raw)
    path.write_bytes(raw[:HEADER_SIZE] + c[1] + c[0] + c[2] + c[3])
    with pytest.raises(IntegrityError), EncryptedReader(path, master) as r:
        r.read()


def test_duplicated_chunk_raises_integrity_error(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, payload(2 * CHUNK_SIZE + 10))
    raw = path.read_bytes()
    c = chunks(raw)
    path.write_bytes(raw[:HEADER_SIZE] + c[0] + c[0] + c[2])
    with pytest.raises(IntegrityError), EncryptedReader(path, master) as r:
        r.read()


def test_dropped_last_chunk_raises_integrity_error(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, payload(3 * CHUNK_SIZE + 10))
    raw = path.read_bytes()
    # Truncate exactly at a chunk boundary: sizes still parse, but no chunk is "last".
    path.write_bytes(raw[: HEADER_SIZE + 3 * CHUNK_ON_DISK])
    with pytest.raises(IntegrityError):
        EncryptedReader(path, master)


def test_mid_chunk_truncation_raises_integrity_error(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, payload(2 * CHUNK_SIZE))
    raw = path.read_bytes()
    path.write_bytes(raw[:-1000])
    with pytest.raises(IntegrityError):
        EncryptedReader(path, master)


def test_header_only_file_raises_integrity_error(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, b"data")
    path.write_bytes(path.read_bytes()[:HEADER_SIZE])
    with pytest.raises(IntegrityError):
        EncryptedReader(path, master)


def test_flipped_ciphertext_byte_raises_integrity_error(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, payload(3 * CHUNK_SIZE))
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE + CHUNK_ON_DISK + 1234] ^= 0x01  # inside chunk 1
    path.write_bytes(bytes(raw))
    with EncryptedReader(path, master) as r:
        assert len(r.read(CHUNK_SIZE)) == CHUNK_SIZE  # chunk 0 is fine
        with pytest.raises(IntegrityError, match="chunk 1"):
            r.read(1)


# version, chunk size, file id, key id and wrapped key of the used slot. (The unused slot
# is deliberately outside every AAD so rewrap can update slots independently.)
@pytest.mark.parametrize("offset", [8, 12, 20, 32, 60])
def test_flipped_header_byte_raises_integrity_error(
    tmp_path: Path, master: MasterKey, offset: int
) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, payload(100))
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        EncryptedReader(path, master)


def test_wrong_master_key_raises_integrity_error(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, b"secret")
    with pytest.raises(IntegrityError, match="not wrapped by master key"):
        EncryptedReader(path, MasterKey.generate())


def test_plain_file_raises_integrity_error(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "plain.txt"
    path.write_bytes(b"x" * 1000)
    with pytest.raises(IntegrityError, match="not a Portside encrypted file"):
        EncryptedReader(path, master)


def test_integrity_error_is_an_at_rest_error() -> None:
    assert issubclass(IntegrityError, AtRestError)


def test_rewrap_switches_to_new_key(tmp_path: Path, master: MasterKey) -> None:
    data = payload(2 * CHUNK_SIZE + 5)
    path = tmp_path / "f.enc"
    write_file(path, master, data)
    body_before = path.read_bytes()[HEADER_SIZE:]
    new = MasterKey.generate()
    rewrap(path, master, new)
    assert path.read_bytes()[HEADER_SIZE:] == body_before  # chunks untouched
    assert read_file(path, new) == data
    assert key_ids(path) == [new.key_id]
    with pytest.raises(IntegrityError):
        EncryptedReader(path, master)


def test_rewrap_is_idempotent(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, b"data")
    new = MasterKey.generate()
    rewrap(path, master, new)
    rewrap(path, master, new)  # e.g. a rotation job re-run after a crash
    assert read_file(path, new) == b"data"


def test_rewrap_finishes_after_crash_between_steps(
    tmp_path: Path, master: MasterKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, b"data")
    new = MasterKey.generate()
    real_pwrite_all = atrest._pwrite_all
    calls = 0

    def crash_on_second_write(fd: int, data: bytes, offset: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # step 2 (clearing the old slot) never happens
            raise OSError("power cut")
        real_pwrite_all(fd, data, offset)

    monkeypatch.setattr(atrest, "_pwrite_all", crash_on_second_write)
    with pytest.raises(OSError, match="power cut"):
        rewrap(path, master, new)
    monkeypatch.undo()
    assert sorted(key_ids(path)) == sorted([master.key_id, new.key_id])
    assert read_file(path, master) == read_file(path, new) == b"data"
    rewrap(path, master, new)
    assert key_ids(path) == [new.key_id]
    assert read_file(path, new) == b"data"


def test_rewrap_finishes_after_torn_write_of_new_slot(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, b"data")
    new = MasterKey.generate()
    raw = bytearray(path.read_bytes())
    slot1 = HEADER_SIZE - 68  # second key slot: key id landed, wrapped key did not
    raw[slot1 : slot1 + 8] = bytes.fromhex(new.key_id)
    raw[slot1 + 8 : slot1 + 40] = os.urandom(32)
    path.write_bytes(bytes(raw))
    assert read_file(path, master) == b"data"  # old slot intact
    rewrap(path, master, new)
    assert key_ids(path) == [new.key_id]
    assert read_file(path, new) == b"data"


def test_rewrap_with_wrong_old_key_raises(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, b"data")
    with pytest.raises(IntegrityError):
        rewrap(path, MasterKey.generate(), MasterKey.generate())
    assert read_file(path, master) == b"data"


def test_resume_with_wrong_key_raises_and_keeps_file(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "f.enc"
    write_file(path, master, b"data")
    with pytest.raises(IntegrityError):
        EncryptedWriter(path, MasterKey.generate(), append=True)
    assert read_file(path, master) == b"data"


def test_master_key_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        MasterKey(b"short")


def test_master_key_id_is_stable_and_short() -> None:
    key = bytes(range(32))
    assert MasterKey(key).key_id == MasterKey(key).key_id
    assert len(MasterKey(key).key_id) == 16
    assert MasterKey(key).key_id != MasterKey.generate().key_id
    assert key.hex() not in repr(MasterKey(key))


def test_master_key_wrap_round_trips_and_detects_tampering() -> None:
    mk = MasterKey.generate()
    dek = os.urandom(32)
    blob = mk.wrap(dek, b"ctx")
    assert mk.unwrap(blob, b"ctx") == dek
    with pytest.raises(IntegrityError):
        mk.unwrap(blob, b"other ctx")
    with pytest.raises(IntegrityError):
        MasterKey.generate().unwrap(blob, b"ctx")


def test_write_after_close_is_rejected(tmp_path: Path, master: MasterKey) -> None:
    w = EncryptedWriter(tmp_path / "f.enc", master)
    w.close(fsync=True)
    w.close()  # idempotent
    with pytest.raises(ValueError):
        w.write(b"x")
