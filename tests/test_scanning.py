"""Behaviour of the clamd client against a real clamd with a home-made signature DB."""

from __future__ import annotations

import contextlib
import io
import resource
import socket
import struct
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Runs with `-p no:django`, where nothing puts the repo root on sys.path for us.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.clamd_server import (  # noqa: E402
    EICAR,
    EICAR_BODY_SIGNATURE,
    EICAR_HASH_SIGNATURE,
    ClamdProcess,
    find_clamd,
    start_clamd,
)
from transfers.scanning import (  # noqa: E402
    MAX_CHUNK_SIZE,
    ClamdClient,
    ScannerError,
    ScannerRefused,
    ScannerUnavailable,
    ScanResult,
    parse_clamd_address,
)

MIB = 1 << 20
BIG_STREAM_MIB = 200


def _require_clamd() -> None:
    if find_clamd() is None:
        pytest.skip("clamd binary not found: install Debian's clamav-daemon (provides clamd)")


@pytest.fixture(scope="module")
def clamd_tcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdProcess]:
    _require_clamd()
    with start_clamd(tmp_path_factory.mktemp("clamd-tcp")) as proc:
        yield proc


@pytest.fixture(scope="module")
def clamd_unix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdProcess]:
    _require_clamd()
    with start_clamd(tmp_path_factory.mktemp("clamd-unix"), tcp=False) as proc:
        yield proc


@pytest.fixture(scope="module")
def clamd_small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdProcess]:
    """clamd with tiny limits: streams over 1 MiB are refused, files over 512 KiB alerted."""
    _require_clamd()
    with start_clamd(
        tmp_path_factory.mktemp("clamd-small"), stream_max_length="1M", max_file_size="512K"
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def clamd_hash_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdProcess]:
    """clamd with only the EICAR MD5 signature, to prove archive members get hashed."""
    _require_clamd()
    with start_clamd(tmp_path_factory.mktemp("clamd-hash"), body_signature=False) as proc:
        yield proc


@pytest.fixture(params=["tcp", "unix"])
def client(request: pytest.FixtureRequest) -> ClamdClient:
    proc: ClamdProcess = request.getfixturevalue(f"clamd_{request.param}")
    return ClamdClient(proc.address, timeout=30)


def _zip_bytes(name: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, payload)
    return buf.getvalue()


def _encrypted_zip_bytes() -> bytes:
    # zipfile cannot encrypt; setting the "encrypted" flag bit in both headers is what
    # clamd's AlertEncrypted heuristic looks at.
    data = bytearray(_zip_bytes("secret.txt", b"quarterly numbers\n" * 100))
    data[6] |= 0x01  # local file header general-purpose flags
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 0x01  # central directory general-purpose flags
    return bytes(data)


class _CountingStream:
    """Yield `mib` 1 MiB blocks then an optional tail, counting what was consumed."""

    def __init__(self, mib: int, tail: bytes = b"", block: bytes = b"\0" * MIB) -> None:
        self.mib, self.tail, self.block = mib, tail, block
        self.yielded = 0
        self.exhausted = False

    @property
    def total(self) -> int:
        return self.mib * len(self.block) + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.mib):
            self.yielded += len(self.block)
            yield self.block
        if self.tail:
            self.yielded += len(self.tail)
            yield self.tail
        self.exhausted = True


# -- address parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tcp://127.0.0.1:3310", ("tcp", "127.0.0.1", 3310, None)),
        ("tcp://clamav.internal:3310", ("tcp", "clamav.internal", 3310, None)),
        ("tcp://[::1]:3310", ("tcp", "::1", 3310, None)),
        ("unix:///run/clamav/clamd.ctl", ("unix", None, None, "/run/clamav/clamd.ctl")),
    ],
)
def test_parse_clamd_address_accepts_tcp_and_unix(value: str, expected: tuple) -> None:
    addr = parse_clamd_address(value)
    assert (addr.scheme, addr.host, addr.port, addr.path) == expected
    assert str(addr) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "127.0.0.1:3310",
        "http://127.0.0.1:3310",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:99999",
        "tcp://127.0.0.1:port",
        "tcp://:3310",
        "tcp://user:pw@host:3310",
        "tcp://host:3310/path",
        "tcp://host:3310?x=1",
        "unix://relative/clamd.sock",
        "unix://",
        "unix:///" + "x" * 200,
    ],
)
def test_parse_clamd_address_rejects_junk(value: str) -> None:
    with pytest.raises(ValueError):
        parse_clamd_address(value)


def test_client_rejects_junk_address() -> None:
    with pytest.raises(ValueError):
        ClamdClient("localhost:3310")


# -- framing and reply parsing against a scripted fake clamd ------------------------------


class _FakeClamd:
    """A scripted clamd stand-in that records INSTREAM framing and sends a fixed reply."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.chunk_sizes: list[int] = []
        self.terminated = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(10)
        self.address = f"tcp://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept(); shutdown() does on Linux.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(5)
        assert not self._thread.is_alive()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as stream:
                command = b""
                while not command.endswith(b"\0"):
                    command += stream.read(1)
                if command == b"zVERSION\0":
                    conn.sendall(b"ClamAV 9.9.9/1/Fake\0")
                    continue
                while (size := struct.unpack(">I", stream.read(4))[0]) != 0:
                    assert len(stream.read(size)) == size
                    self.chunk_sizes.append(size)
                self.terminated = True
                conn.sendall(self.reply)


@pytest.fixture
def fake_clamd(request: pytest.FixtureRequest) -> Iterator[_FakeClamd]:
    fake = _FakeClamd(getattr(request, "param", b"stream: OK\0"))
    yield fake
    fake.close()


def test_chunks_are_split_to_at_most_1_mib_empty_chunks_skipped_and_terminated(
    fake_clamd: _FakeClamd,
) -> None:
    chunks: list[bytes | bytearray | memoryview] = [
        b"",
        b"x" * (2 * MIB + MIB // 2),
        bytearray(10),
        memoryview(b"y" * 5),
        b"",
    ]
    result = ClamdClient(fake_clamd.address).scan_stream(chunks)
    assert fake_clamd.chunk_sizes == [MIB, MIB, MIB // 2, 10, 5]
    assert max(fake_clamd.chunk_sizes) <= MAX_CHUNK_SIZE
    assert fake_clamd.terminated
    assert result.clean and result.bytes_sent == 2 * MIB + MIB // 2 + 15
    assert result.engine_version == "ClamAV 9.9.9/1/Fake"


@pytest.mark.parametrize(
    "fake_clamd",
    [b"stream: Eicar-Signature(44d88612fea8a8f36de82e1278abb02f:68) FOUND\0"],
    indirect=True,
)
def test_extended_detection_info_is_stripped_from_signature(fake_clamd: _FakeClamd) -> None:
    result = ClamdClient(fake_clamd.address).scan_stream([b"data"])
    assert not result.clean and result.signature == "Eicar-Signature"
    assert result.raw.endswith("FOUND")


@pytest.mark.parametrize(
    "fake_clamd", [b"stream: Heuristics.Limits.Exceeded.MaxScanSize FOUND\0"], indirect=True
)
def test_limits_exceeded_reply_is_flagged_not_infected(fake_clamd: _FakeClamd) -> None:
    result = ClamdClient(fake_clamd.address).scan_stream([b"data"])
    assert result.limits_exceeded and not result.clean and not result.infected


@pytest.mark.parametrize("fake_clamd", [b"Can't allocate memory ERROR\0"], indirect=True)
def test_error_reply_raises_scanner_refused(fake_clamd: _FakeClamd) -> None:
    with pytest.raises(ScannerRefused, match="ERROR"):
        ClamdClient(fake_clamd.address).scan_stream([b"data"])


@pytest.mark.parametrize("fake_clamd", [b"what is this\0"], indirect=True)
def test_unintelligible_reply_raises_scanner_error(fake_clamd: _FakeClamd) -> None:
    with pytest.raises(ScannerError) as excinfo:
        ClamdClient(fake_clamd.address).scan_stream([b"data"])
    assert type(excinfo.value) is ScannerError


# -- unreachable scanners ---------------------------------------------------------------------


def test_unreachable_tcp_address_raises_scanner_unavailable() -> None:
    with socket.socket() as sock:  # reserve a port, then leave it closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ClamdClient(f"tcp://127.0.0.1:{port}", timeout=5)
    with pytest.raises(ScannerUnavailable):
        client.ping()
    with pytest.raises(ScannerUnavailable):
        client.scan_stream([EICAR])


def test_missing_unix_socket_raises_scanner_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ScannerUnavailable):
        ClamdClient(f"unix://{tmp_path}/nope.sock", timeout=5).version()


def test_silent_server_raises_scanner_unavailable_after_timeout() -> None:
    # A listening socket that never accepts: connect succeeds, no reply ever comes.
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = ClamdClient(f"tcp://127.0.0.1:{server.getsockname()[1]}", timeout=0.3)
        with pytest.raises(ScannerUnavailable, match="timed out"):
            client.ping()


def test_stream_is_not_consumed_when_clamd_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stream = _CountingStream(4)
    with pytest.raises(ScannerUnavailable):
        ClamdClient(f"tcp://127.0.0.1:{port}", timeout=5).scan_stream(stream)
    assert stream.yielded == 0


# -- real clamd -------------------------------------------------------------------------------


def test_ping_answers_true(client: ClamdClient) -> None:
    assert client.ping() is True


def test_version_reports_clamav_engine(client: ClamdClient) -> None:
    version = client.version()
    assert version.startswith("ClamAV ")
    assert version.split()[1][0].isdigit()


def test_eicar_is_detected_with_its_signature_name(client: ClamdClient) -> None:
    result = client.scan_stream([EICAR])
    assert isinstance(result, ScanResult)
    assert not result.clean and result.infected and not result.limits_exceeded
    # Both home-made signatures match; the name always starts with the hash signature's.
    assert result.signature is not None
    assert result.signature.startswith(EICAR_HASH_SIGNATURE)
    assert result.raw == f"stream: {result.signature} FOUND"
    assert result.engine_version == client.version()


def test_eicar_inside_zip_is_detected(client: ClamdClient) -> None:
    result = client.scan_stream([_zip_bytes("docs/readme.com", EICAR)])
    assert result.infected and result.signature is not None
    assert result.signature.startswith(EICAR_HASH_SIGNATURE)


def test_eicar_inside_zip_is_detected_by_md5_of_the_unpacked_member(
    clamd_hash_only: ClamdProcess,
) -> None:
    client = ClamdClient(clamd_hash_only.address)
    assert client.scan_stream([EICAR]).signature == f"{EICAR_HASH_SIGNATURE}.UNOFFICIAL"
    zipped = client.scan_stream([_zip_bytes("eicar.com", EICAR)])
    assert zipped.signature == f"{EICAR_HASH_SIGNATURE}.UNOFFICIAL"
    # The MD5 signature only matches a whole file, never EICAR embedded in other bytes.
    assert client.scan_stream([b"prefix " + EICAR]).clean


def test_clean_file_is_reported_clean(client: ClamdClient, tmp_path: Path) -> None:
    path = tmp_path / "invoice.csv"
    path.write_text("id,amount\n" + "".join(f"{i},{i * 3}.50\n" for i in range(50_000)))
    result = client.scan_file(path)
    assert result.clean and not result.infected and result.signature is None
    assert result.raw == "stream: OK"
    assert result.bytes_sent == path.stat().st_size


def test_eicar_file_is_detected_via_scan_file(client: ClamdClient, tmp_path: Path) -> None:
    path = tmp_path / "eicar.com"
    path.write_bytes(EICAR)
    assert client.scan_file(path).infected


def test_encrypted_zip_is_an_infection_like_finding(client: ClamdClient) -> None:
    result = client.scan_stream([_encrypted_zip_bytes()])
    assert not result.clean and result.infected and not result.limits_exceeded
    assert result.signature is not None and result.signature.startswith("Heuristics.Encrypted.")


def test_error_from_callers_iterator_propagates_unwrapped(client: ClamdClient) -> None:
    def failing() -> Iterator[bytes]:
        yield b"a" * 1000
        raise OSError("disk read failed")

    with pytest.raises(OSError, match="disk read failed") as excinfo:
        client.scan_stream(failing())
    assert not isinstance(excinfo.value, ScannerError)
    assert client.ping()  # clamd shrugs off the abandoned stream


@pytest.mark.slow
def test_200_mb_clean_stream_is_sent_whole_without_buffering(clamd_tcp: ClamdProcess) -> None:
    stream = _CountingStream(BIG_STREAM_MIB)
    rss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = ClamdClient(clamd_tcp.address, timeout=120).scan_stream(stream)
    rss_after_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.clean
    assert stream.exhausted and result.bytes_sent == stream.total == BIG_STREAM_MIB * MIB
    # Streaming must not hold the stream in memory (peak RSS grows far less than 200 MB).
    assert rss_after_kib - rss_before_kib < 64 * 1024


@pytest.mark.slow
def test_eicar_at_the_very_end_of_a_200_mb_stream_is_detected(clamd_tcp: ClamdProcess) -> None:
    stream = _CountingStream(BIG_STREAM_MIB, tail=EICAR)
    result = ClamdClient(clamd_tcp.address, timeout=120).scan_stream(stream)
    # Only the body signature can match EICAR embedded at offset 200 MiB.
    assert result.signature == f"{EICAR_BODY_SIGNATURE}.UNOFFICIAL"
    assert result.infected
    assert result.bytes_sent == stream.total == BIG_STREAM_MIB * MIB + len(EICAR)


@pytest.mark.parametrize("tcp", [True, False], ids=["tcp", "unix"])
def test_clamd_stopped_mid_stream_raises_unavailable_and_recovers_after_restart(
    tmp_path: Path, tcp: bool
) -> None:
    _require_clamd()
    with start_clamd(tmp_path, tcp=tcp) as proc:
        address = proc.address
        client = ClamdClient(address, timeout=10)
        sent = 0

        def stream() -> Iterator[bytes]:
            nonlocal sent
            for i in range(100):
                if i == 20:
                    proc.stop()
                sent += MIB
                yield b"\0" * MIB

        with pytest.raises(ScannerUnavailable):
            client.scan_stream(stream())
        assert 20 * MIB <= sent < 100 * MIB  # gave up soon after clamd went away
        with pytest.raises(ScannerUnavailable):
            client.ping()

        proc.restart()
        assert proc.address == address
        assert client.scan_stream([EICAR]).infected
        assert client.scan_stream([b"hello"]).clean


def test_killed_clamd_raises_unavailable(tmp_path: Path) -> None:
    _require_clamd()
    with start_clamd(tmp_path) as proc:
        client = ClamdClient(proc.address, timeout=10)

        def stream() -> Iterator[bytes]:
            yield b"\0" * MIB
            proc.kill()
            for _ in range(50):
                yield b"\0" * MIB

        with pytest.raises(ScannerUnavailable):
            client.scan_stream(stream())


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param(lambda: [b"a" * (3 * MIB)], id="one-big-chunk"),
        pytest.param(lambda: (b"a" * MIB for _ in range(50)), id="50-mib-generator"),
        pytest.param(lambda: (b"a" * 10_000 for _ in range(2_000)), id="small-chunks"),
    ],
)
def test_stream_over_stream_max_length_raises_scanner_refused(
    clamd_small: ClamdProcess, chunks
) -> None:
    client = ClamdClient(clamd_small.address, timeout=10)
    with pytest.raises(ScannerRefused, match="size limit exceeded"):
        client.scan_stream(chunks())
    assert client.ping()


def test_stream_over_max_file_size_is_limits_exceeded_not_infected(
    clamd_small: ClamdProcess,
) -> None:
    result = ClamdClient(clamd_small.address).scan_stream([b"a" * (600 * 1024)])
    assert result.limits_exceeded
    assert not result.clean and not result.infected
    assert result.signature == "Heuristics.Limits.Exceeded.MaxFileSize"


def test_restart_keeps_the_same_unix_socket(clamd_unix: ClamdProcess) -> None:
    address = clamd_unix.address
    clamd_unix.restart()
    assert clamd_unix.address == address
    assert ClamdClient(address).ping()
