"""The listening ports of a gateway with several worker processes (SO_REUSEPORT).

Each worker listens on its own SO_REUSEPORT socket on the ports the parent reserved. The
kernel would let a second gateway of the same user bind those ports too and hand it half
of the connections; the parent refuses to start instead.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import subprocess
import sys

import pytest
from django.conf import settings

from ftps_gateway.server import GatewayConfig, bind_listeners, worker_listeners
from tests.live_worker import ROOT, current_database_url


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(port: int) -> GatewayConfig:
    return GatewayConfig.from_settings(bind_address="127.0.0.1", explicit_port=port,
                                       implicit_port=None, workers=2)


def _close(*groups: dict[str, socket.socket]) -> None:
    for group in groups:
        for sock in group.values():
            sock.close()


def test_a_second_gateway_cannot_start_on_a_port_a_running_one_serves():
    port = _free_port()
    reserved = bind_listeners(_config(port), listen=False)
    served = worker_listeners(reserved)
    try:
        with pytest.raises(OSError) as refused:
            bind_listeners(_config(port), listen=False)
        assert refused.value.errno == errno.EADDRINUSE
        # The running gateway still gets the connections.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            assert _wait_readable(served["explicit"])
            conn, _ = served["explicit"].accept()
            conn.close()
    finally:
        _close(reserved, served)


def test_a_gateway_restarts_at_once_on_a_port_whose_connections_are_in_time_wait():
    port = _free_port()
    reserved = bind_listeners(_config(port), listen=False)
    served = worker_listeners(reserved)
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert _wait_readable(served["explicit"])
    conn, _ = served["explicit"].accept()
    conn.close()  # the server closes first: its side of the connection is in TIME_WAIT
    assert client.recv(1) == b""
    client.close()
    _close(reserved, served)

    again = bind_listeners(_config(port), listen=False)
    _close(again)


def _wait_readable(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 5)
    return bool(readable)


@pytest.mark.django_db(transaction=True)
def test_run_gateway_says_which_ports_are_taken_instead_of_sharing_them():
    port = _free_port()
    reserved = bind_listeners(_config(port), listen=False)
    served = worker_listeners(reserved)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": current_database_url(), "MFT_DATA_DIR": str(settings.DATA_DIR),
           "MFT_BIND_ADDRESS": "127.0.0.1", "MFT_FTPS_PORT": str(port),
           "MFT_FTPS_IMPLICIT_PORT": "off", "MFT_GATEWAY_WORKERS": "2"}
    try:
        done = subprocess.run([sys.executable, "manage.py", "run_gateway"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        _close(reserved, served)
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1 port(s) [{port}]" in done.stderr
    assert "already uses" in done.stderr
