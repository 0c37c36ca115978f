"""End-to-end: connection caps, idle and stalled-transfer timeouts, listeners turned off,
and the per-user TLS-reuse exemption, against a real gateway with real ftplib clients."""

from __future__ import annotations

import socket
import time

import pytest

from accounts.models import User
from tests.audit_log import wait_for_event
from tests.ftps_client import login, stock_login
from tests.waiting import until
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)


def _greeting(port: int) -> tuple[socket.socket, bytes]:
    """Open a plain TCP connection to the explicit port; return it and its first line."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock, sock.makefile("rb").readline()


def test_connections_from_one_address_beyond_the_cap_get_421(partner, gateway_factory):
    gateway = gateway_factory(max_connections_per_ip=2)
    first, second = _greeting(gateway.explicit_port), _greeting(gateway.explicit_port)
    try:
        assert first[1].startswith(b"220") and second[1].startswith(b"220")
        third, line = _greeting(gateway.explicit_port)
        third.close()
        assert line.startswith(b"421"), line
    finally:
        first[0].close()
        second[0].close()


def test_connections_beyond_the_total_cap_get_421(partner, gateway_factory):
    gateway = gateway_factory(max_connections=2)
    first, second = _greeting(gateway.explicit_port), _greeting(gateway.explicit_port)
    try:
        third, line = _greeting(gateway.explicit_port)
        third.close()
        assert line.startswith(b"421"), line
    finally:
        first[0].close()
        second[0].close()


def test_idle_session_is_closed_after_the_idle_timeout(partner, gateway_factory):
    gateway = gateway_factory(idle_timeout=1)
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        time.sleep(2.5)  # pyftpdlib checks idleness once per timeout period
        assert ftp.getline().startswith("421")
    finally:
        ftp.close()
    assert wait_for_event(action="disconnect", actor="alice")


def test_stalled_upload_is_cut_off_and_keeps_the_part_received(partner, gateway_factory):
    gateway = gateway_factory(data_timeout=1)
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd("STOR slow.bin")
        conn.sendall(b"x" * 50_000)
        answers = []
        for _ in range(3):  # no more bytes come: the timer fires, then the session ends
            try:
                answers.append(ftp.getline())
            except EOFError:
                break
        assert answers == ["421 Data connection timed out."], answers
        conn.close()
    finally:
        ftp.close()
    stored = until(lambda: StoredFile.objects.filter(path="/slow.bin").first(),
                   what="the partial upload row")
    assert (stored.state, stored.size) == (FileState.PARTIAL, 50_000)


def test_implicit_listener_can_be_turned_off(partner, gateway_factory):
    gateway = gateway_factory(implicit_port=None)
    assert "implicit" not in gateway.process.ports
    login(gateway.explicit_port, partner.username, partner.password).quit()


def test_explicit_listener_can_be_turned_off(partner, gateway_factory):
    gateway = gateway_factory(explicit_port=None)
    assert "explicit" not in gateway.process.ports
    login(gateway.implicit_port, partner.username, partner.password, implicit=True).quit()


def test_user_exempted_from_tls_reuse_may_use_the_stock_client(partner, gateway):
    User.objects.filter(pk=partner.user.pk).update(tls_reuse_exempt=True)
    ftp = stock_login(gateway.explicit_port, partner.username, partner.password)
    try:
        assert ftp.nlst() == []
    finally:
        ftp.quit()
