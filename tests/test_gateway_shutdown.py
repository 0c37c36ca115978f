"""Graceful stop: a running transfer finishes, idle sessions are told 421, nothing new in."""

from __future__ import annotations

import ftplib
import hashlib
import socket
import time

import pytest

from tests.ftps_client import login
from transfers.models import StoredFile

pytestmark = pytest.mark.django_db(transaction=True)


def test_drain_lets_a_running_upload_finish_and_tells_idle_sessions_421(cast, gateway):
    idle = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    busy = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    busy.voidcmd("TYPE I")
    data = b"z" * (4 * 1024 * 1024)
    conn = busy.transfercmd("STOR during-shutdown.bin")
    conn.sendall(data[: len(data) // 2])
    gateway.process.drain(grace=30)
    time.sleep(1.0)  # the loop closes listeners and tells idle sessions to leave
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gateway.explicit_port), timeout=3).recv(1)
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        idle.getresp()
    conn.sendall(data[len(data) // 2:])
    conn.unwrap().close()
    reply = busy.voidresp()
    assert reply.startswith("226") and hashlib.sha256(data).hexdigest() in reply
    stored = StoredFile.objects.get(path="/during-shutdown.bin")
    assert stored.size == len(data)
