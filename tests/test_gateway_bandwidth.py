"""End-to-end: per-user bandwidth limits on FTPS data connections.

Bounds are behaviour bounds (a limited transfer cannot beat its rate), with a margin for
the bucket's small head start; they are not performance assertions.
"""

from __future__ import annotations

import io
import os
import threading
import time
from typing import Any

import pytest

from accounts import users
from audit.events import Origin
from mft.errors import InvalidInput
from tests.ftps_client import login
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

ADMIN = Origin(actor="test-admin", protocol="test")
KIB = 1024
MIB = 1024 * KIB


def _limit(member, *, upload: int = 0, download: int = 0) -> None:
    """Set a user's limits through the user service, as the API does."""
    users.update_user(member.user, origin=ADMIN, upload_bytes_per_second=upload,
                      download_bytes_per_second=download)


def _ready_file(port: int, member, name: str, size: int) -> bytes:
    """Upload random bytes as `name` and mark the file ready; return the bytes."""
    data = os.urandom(size)
    ftp = login(port, member.username, member.password)
    try:
        ftp.storbinary(f"STOR {name}", io.BytesIO(data))
    finally:
        ftp.quit()
    StoredFile.objects.filter(path=f"/{name}").update(state=FileState.READY)
    return data


def _timed_download(port: int, member, name: str) -> tuple[bytes, float]:
    """Download a file in a new session; return its bytes and the RETR's duration."""
    ftp = login(port, member.username, member.password, timeout=60)
    try:
        received = io.BytesIO()
        started = time.monotonic()
        ftp.retrbinary(f"RETR {name}", received.write, blocksize=64 * KIB)
        return received.getvalue(), time.monotonic() - started
    finally:
        ftp.quit()


def test_download_is_held_to_the_users_rate(partner, gateway):
    data = _ready_file(gateway.explicit_port, partner, "big.bin", 2 * MIB)
    _limit(partner, download=512 * KIB)
    received, seconds = _timed_download(gateway.explicit_port, partner, "big.bin")
    assert received == data
    assert seconds >= 3.5, f"2 MiB at 512 KiB/s took only {seconds:.2f} s"


def test_upload_is_held_to_the_users_rate(partner, gateway):
    _limit(partner, upload=256 * KIB)
    data = os.urandom(1 * MIB)
    ftp = login(gateway.explicit_port, partner.username, partner.password, timeout=60)
    try:
        started = time.monotonic()
        final = ftp.storbinary("STOR up.bin", io.BytesIO(data), blocksize=64 * KIB)
        seconds = time.monotonic() - started
    finally:
        ftp.quit()
    assert final.startswith("226")
    stored = type(partner.user).objects.get(pk=partner.user.pk).upload_bytes_per_second
    assert seconds >= 3.0, f"1 MiB at 256 KiB/s took only {seconds:.2f} s (stored {stored})"


def test_a_held_upload_whose_end_arrived_with_its_last_piece_completes(partner, gateway):
    # Not a whole number of pieces: the last read takes the tail and the client's
    # close_notify together while the user's budget is spent, so the end must be acted on
    # when the pause is over (the socket will never signal it again).
    _limit(partner, upload=256 * KIB)
    data = os.urandom(512 * KIB + 1000)
    ftp = login(gateway.explicit_port, partner.username, partner.password, timeout=20)
    try:
        final = ftp.storbinary("STOR tail.bin", io.BytesIO(data), blocksize=64 * KIB)
    finally:
        ftp.close()
    assert final.startswith("226")
    stored = StoredFile.objects.get(path="/tail.bin")
    assert stored.size == len(data)


def test_unlimited_user_is_not_held_back(partner, gateway):
    data = _ready_file(gateway.explicit_port, partner, "big.bin", 2 * MIB)
    received, seconds = _timed_download(gateway.explicit_port, partner, "big.bin")
    assert received == data
    assert seconds < 2.0, f"an unlimited 2 MiB download took {seconds:.2f} s"


def test_two_downloads_of_one_user_share_the_limit(partner, gateway):
    data = _ready_file(gateway.explicit_port, partner, "half.bin", 1 * MIB)
    _limit(partner, download=512 * KIB)
    results: list[tuple[bytes, float]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2, timeout=30)

    def download() -> None:
        try:
            start.wait()
            results.append(_timed_download(gateway.explicit_port, partner, "half.bin"))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=download) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and len(results) == 2, errors
    assert all(received == data for received, _ in results)
    # Alone, each would take ~1.75 s; sharing 512 KiB/s, the pair moves 2 MiB in ~3.75 s.
    slowest = max(seconds for _, seconds in results)
    assert slowest >= 3.2, f"two 1 MiB downloads at a shared 512 KiB/s took {slowest:.2f} s"


def test_limits_are_refused_when_negative(partner):
    with pytest.raises(InvalidInput):
        users.update_user(partner.user, origin=ADMIN, download_bytes_per_second=-1)
    partner.user.refresh_from_db()
    assert partner.user.download_bytes_per_second == 0


def _sessions_by_worker(port: int, member, tries: int = 16) -> dict[int, Any]:
    """Log in until two sessions sit on different worker processes; return one per pid."""
    from transfers.models import GatewaySession

    by_port: dict[int, Any] = {}
    by_pid: dict[int, Any] = {}
    for _ in range(tries):
        ftp = login(port, member.username, member.password, timeout=60)
        assert ftp.sock is not None
        by_port[ftp.sock.getsockname()[1]] = ftp
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the gateway publishes its sessions every 2 s
            rows = GatewaySession.objects.filter(remote_port__in=list(by_port))
            if rows.count() == len(by_port):
                break
            time.sleep(0.2)
        for row in GatewaySession.objects.filter(remote_port__in=list(by_port)):
            by_pid.setdefault(row.pid, by_port[int(row.remote_port or 0)])
        if len(by_pid) >= 2:
            break
    for ftp in by_port.values():
        if ftp not in by_pid.values():
            ftp.quit()
    return by_pid


def test_sessions_on_different_worker_processes_share_the_users_limit(partner, tmp_path):
    from tests.test_gateway_sigterm import GatewayChild

    gateway = GatewayChild(tmp_path, workers=2)
    try:
        port = gateway.port()
        data = _ready_file(port, partner, "split.bin", 1 * MIB)
        _limit(partner, download=512 * KIB)
        sessions = list(_sessions_by_worker(port, partner).values())[:2]
        assert len(sessions) == 2, "every session landed on one worker process"
        results: list[tuple[bytes, float]] = []
        errors: list[BaseException] = []
        start = threading.Barrier(2, timeout=30)

        def download(ftp) -> None:
            try:
                start.wait()
                received = io.BytesIO()
                began = time.monotonic()
                ftp.retrbinary("RETR split.bin", received.write, blocksize=64 * KIB)
                results.append((received.getvalue(), time.monotonic() - began))
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=download, args=(ftp,)) for ftp in sessions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for ftp in sessions:
            ftp.quit()
        assert not errors and len(results) == 2, errors
        assert all(received == data for received, _ in results)
        # Each process enforcing its own budget would let both finish in ~1.75 s.
        slowest = max(seconds for _, seconds in results)
        assert slowest >= 3.2, f"two workers let 2 MiB through a 512 KiB/s limit in {slowest:.2f} s"
    finally:
        gateway.close()
