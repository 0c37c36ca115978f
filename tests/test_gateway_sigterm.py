"""`manage.py run_gateway` on SIGTERM: a running upload completes, idle sessions get 421."""

from __future__ import annotations

import ftplib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.ftps_client import login
from tests.live_worker import ROOT, current_database_url
from transfers.models import StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

LISTENING = re.compile(r"FTPS explicit listening on 127\.0\.0\.1:(\d+)")


class GatewayChild:
    """`manage.py run_gateway` as a child process against the test database."""

    def __init__(self, directory: Path, workers: int) -> None:
        self.log_path = directory / "gateway.log"
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
               "DATABASE_URL": current_database_url(),
               "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
               "MFT_DATA_DIR": str(settings.DATA_DIR), "MFT_LOG_FORMAT": "plain",
               "MFT_BIND_ADDRESS": "127.0.0.1", "MFT_FTPS_PORT": "0",
               "MFT_FTPS_IMPLICIT_PORT": "off", "MFT_GATEWAY_WORKERS": str(workers),
               "MFT_GATEWAY_STOP_GRACE_SECONDS": "60", "MFT_PASSIVE_PORTS": "42700-42799"}
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "manage.py", "run_gateway"], cwd=ROOT,
                                        env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        """Return the end of the gateway's output."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def port(self, timeout: float = 60) -> int:
        """Wait for the explicit listener's log line and return its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            found = LISTENING.search(self.log_path.read_text(errors="replace"))
            if found:
                return int(found.group(1))
            time.sleep(0.2)
        raise AssertionError(f"gateway did not listen in time:\n{self.log()}")

    def close(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL) if a test left it running."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self._log.close()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[type[GatewayChild]]:
    children: list[GatewayChild] = []

    def start(workers: int) -> GatewayChild:
        child = GatewayChild(tmp_path, workers)
        children.append(child)
        return child

    yield start  # type: ignore[misc]
    for child in children:
        child.close()


def _refused(port: int, timeout: float = 15) -> bool:
    """Return True once nothing accepts connections on the port any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
                sock.settimeout(3)
                if not sock.recv(1):  # accepted by a closing listener, then dropped
                    return True
        except OSError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_a_running_upload_complete_and_tells_idle_sessions_421(
        cast, start_gateway, workers):
    gateway = start_gateway(workers)
    port = gateway.port()
    idle = login(port, cast.partner.username, cast.partner.password)
    busy = login(port, cast.partner.username, cast.partner.password)
    busy.voidcmd("TYPE I")
    data = os.urandom(4 * 1024 * 1024)
    conn = busy.transfercmd("STOR during-sigterm.bin")
    conn.sendall(data[: len(data) // 2])

    gateway.process.send_signal(signal.SIGTERM)

    with pytest.raises(ftplib.error_temp, match=r"^421"):
        idle.getresp()
    assert _refused(port), "the gateway still accepts connections while draining"
    assert gateway.process.poll() is None, "the gateway exited during a transfer"
    conn.sendall(data[len(data) // 2:])
    conn.unwrap().close()
    reply = busy.voidresp()
    assert reply.startswith("226") and hashlib.sha256(data).hexdigest() in reply
    assert gateway.process.wait(30) == 0, gateway.log()
    stored = StoredFile.objects.get(path="/during-sigterm.bin")
    assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()


def _children(pid: int) -> list[int]:
    """Return the pids of a process's children."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _alive(pid: int) -> bool:
    """Return True while a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_workers_drain_and_exit_when_the_parent_gateway_is_killed(start_gateway):
    gateway = start_gateway(2)
    gateway.port()
    deadline = time.monotonic() + 30
    while len(_children(gateway.process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = _children(gateway.process.pid)
    assert len(workers) == 2, gateway.log()

    gateway.process.kill()  # no SIGTERM to pass on: the parent just dies
    gateway.process.wait(30)

    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "orphaned gateway workers kept running"
