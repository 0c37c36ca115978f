"""A worker's clamd session: many scans on one connection, surviving clamd going away."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.clamd_server import EICAR, ClamdProcess, start_clamd
from transfers.scanning import ClamdSession, ScannerRefused, ScannerUnavailable


@pytest.fixture
def clamd_small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdProcess]:
    """A clamd that refuses streams over 1 MiB (StreamMaxLength), on TCP."""
    process = start_clamd(tmp_path_factory.mktemp("clamd-session-small"),
                          stream_max_length="1M", max_file_size="512K")
    yield process
    process.stop()


def test_a_session_gives_each_scan_its_own_verdict_one_after_another(clamd):
    session = ClamdSession(clamd.address, timeout=30)
    try:
        verdicts = [session.scan_stream([data]) for data in (b"fine", EICAR, b"also fine")]
    finally:
        session.close()
    assert [v.clean for v in verdicts] == [True, False, True]
    assert verdicts[1].signature and verdicts[1].signature.startswith("Eicar-Test-Signature")
    assert all(v.engine_version.startswith("ClamAV") for v in verdicts)


def test_a_session_scans_again_after_clamd_restarts(clamd):
    session = ClamdSession(clamd.address, timeout=30)
    try:
        assert session.scan_stream([b"before"]).clean
        clamd.restart()  # drops the session's connection
        assert session.scan_stream([EICAR]).infected
    finally:
        session.close()


def test_a_session_is_unavailable_while_clamd_is_down_without_reading_the_stream(
        clamd: ClamdProcess) -> None:
    session = ClamdSession(clamd.address, timeout=30)
    read: list[bytes] = []

    def chunks() -> Iterator[bytes]:
        read.append(b"first")
        yield b"first"

    try:
        assert session.scan_stream([b"warm"]).clean
        clamd.stop()
        try:
            with pytest.raises(ScannerUnavailable):
                session.scan_stream(chunks())
        finally:
            clamd.start()
        assert read == []
        assert session.scan_stream(chunks()).clean
    finally:
        session.close()


def test_a_session_scans_after_clamd_refused_a_stream_and_hung_up(clamd_small):
    session = ClamdSession(clamd_small.address, timeout=30)
    try:
        with pytest.raises(ScannerRefused):
            session.scan_stream([b"\0" * (1 << 20)] * 3)
        assert session.scan_stream([b"small"]).clean
    finally:
        session.close()
