"""End-to-end: PROXY protocol v1/v2 from a trusted balancer names the real client.

The "balancer" is the test client itself on 127.0.0.1, writing the header a balancer
would; the clients it names are documentation addresses (RFC 5737).
"""

from __future__ import annotations

import ftplib
import io
import socket
import struct
import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.models import Ban
from audit.models import AuditEvent
from tests import proxy_client
from tests.audit_log import wait_for_event
from tests.ftps_client import login

pytestmark = pytest.mark.django_db(transaction=True)

CLIENT = "198.51.100.7"
OTHER_CLIENT = "203.0.113.44"
VERSIONS = pytest.mark.parametrize("version", ["v1", "v2"])
MODES = pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])


@pytest.fixture
def proxied(gateway_factory):
    """A gateway that believes PROXY headers from 127.0.0.1 (any version)."""
    return gateway_factory(proxy_protocol="any", proxy_trusted=("127.0.0.1/32",),
                           proxy_timeout=2.0)


@pytest.fixture
def untrusting(gateway_factory):
    """A gateway with PROXY protocol on, whose only trusted balancer is elsewhere."""
    return gateway_factory(proxy_protocol="any", proxy_trusted=("192.0.2.1/32",))


def _closed_without_greeting(sock: socket.socket, timeout: float = 10) -> bytes:
    """Read until the gateway closes the connection; return what it sent."""
    sock.settimeout(timeout)
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the gateway kept the connection open; sent {received!r}")


# --- the header names the client -----------------------------------------------------------


@VERSIONS
@MODES
def test_header_from_trusted_balancer_names_the_client_in_audit(partner, proxied, version,
                                                                implicit):
    header = proxy_client.HEADERS[version](CLIENT)
    ftp = proxy_client.login(proxied.port(implicit), header, "alice", partner.password,
                             implicit=implicit)
    try:
        ftp.storbinary("STOR via-balancer.txt", io.BytesIO(b"hello through the balancer"))
        assert "via-balancer.txt" in ftp.nlst()
    finally:
        ftp.quit()
    event = wait_for_event(action="login", outcome="success", actor="alice")
    assert event.source_ip == CLIENT
    assert event.details["proxied_by"] == "127.0.0.1"
    upload = wait_for_event(action="upload", outcome="success")
    assert upload.source_ip == CLIENT


@override_settings(BAN_FAILURES=2)
def test_failed_logins_ban_the_headers_client_not_the_balancer(partner, proxied):
    header = proxy_client.v1_header(CLIENT)
    for _ in range(2):
        ftp = proxy_client.connect(proxied.explicit_port, header)
        try:
            with pytest.raises(ftplib.error_perm, match=r"^530"):
                ftplib.FTP.login(ftp, "alice", "wrong-password")
        finally:
            ftp.close()
    assert Ban.objects.filter(address=CLIENT).exists()
    assert not Ban.objects.filter(address="127.0.0.1").exists()
    # Another client behind the same balancer is not affected.
    proxy_client.login(proxied.explicit_port, proxy_client.v1_header(OTHER_CLIENT),
                       "alice", partner.password).quit()


@VERSIONS
def test_banned_client_is_refused_though_the_balancer_is_not_banned(partner, proxied,
                                                                    version):
    Ban.objects.create(address=CLIENT, reason="test",
                       expires_at=timezone.now() + timedelta(hours=1))
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        proxy_client.connect(proxied.explicit_port, proxy_client.HEADERS[version](CLIENT))
    proxy_client.login(proxied.explicit_port, proxy_client.HEADERS[version](OTHER_CLIENT),
                       "alice", partner.password).quit()


def test_allow_list_sees_the_headers_client(partner, proxied):
    user = partner.user
    user.allowed_ips = [f"{OTHER_CLIENT}/32"]
    user.save(update_fields=["allowed_ips"])
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        proxy_client.login(proxied.explicit_port, proxy_client.v1_header(CLIENT),
                           "alice", partner.password)
    proxy_client.login(proxied.explicit_port, proxy_client.v1_header(OTHER_CLIENT),
                       "alice", partner.password).quit()


# --- data connections ----------------------------------------------------------------------


def test_data_connection_naming_another_client_is_refused(partner, proxied):
    ftp = proxy_client.login(proxied.explicit_port, proxy_client.v2_header(CLIENT),
                             "alice", partner.password,
                             data_header=proxy_client.v2_header(OTHER_CLIENT))
    try:
        with pytest.raises((ftplib.error_temp, OSError)):
            ftp.nlst()
    finally:
        ftp.close()
    event = wait_for_event(action="refused", details__command="PROXY-data")
    assert OTHER_CLIENT in event.details["reply"]


def test_data_connection_without_a_header_is_refused(partner, proxied):
    ftp = proxy_client.login(proxied.explicit_port, proxy_client.v1_header(CLIENT),
                             "alice", partner.password, data_header=b"")
    try:
        with pytest.raises((ftplib.error_temp, ftplib.error_reply, OSError)):
            ftp.nlst()
    finally:
        ftp.close()
    assert wait_for_event(action="refused", details__command="PROXY-data")


# --- refusals ------------------------------------------------------------------------------


@VERSIONS
def test_header_from_an_untrusted_peer_is_refused_on_the_explicit_listener(partner,
                                                                           untrusting,
                                                                           version):
    sock = socket.create_connection(("127.0.0.1", untrusting.explicit_port), timeout=10)
    try:
        sock.sendall(proxy_client.HEADERS[version](CLIENT))
        replies = _closed_without_greeting(sock).decode(errors="replace")
    finally:
        sock.close()
    assert "421 PROXY header refused" in replies
    event = wait_for_event(action="refused", details__command="PROXY")
    assert event.source_ip == "127.0.0.1"
    assert AuditEvent.objects.filter(action="refused", details__command="PROXY").count() == 1
    assert not AuditEvent.objects.filter(source_ip=CLIENT).exists()


@VERSIONS
def test_header_from_an_untrusted_peer_is_refused_on_the_implicit_listener(partner,
                                                                           untrusting,
                                                                           version):
    sock = socket.create_connection(("127.0.0.1", untrusting.implicit_port), timeout=10)
    try:
        sock.sendall(proxy_client.HEADERS[version](CLIENT))
        assert _closed_without_greeting(sock) == b""
    finally:
        sock.close()
    event = wait_for_event(action="refused", details__command="PROXY")
    assert event.details["reply"] == "PROXY header from an untrusted peer"


def test_direct_clients_still_served_when_proxy_protocol_is_on(partner, untrusting):
    login(untrusting.explicit_port, "alice", partner.password).quit()
    login(untrusting.implicit_port, "alice", partner.password, implicit=True).quit()


@MODES
def test_missing_header_from_a_trusted_balancer_is_refused(partner, proxied, implicit):
    started = time.monotonic()
    with pytest.raises((EOFError, OSError, ftplib.Error)):
        login(proxied.port(implicit), "alice", partner.password, implicit=implicit,
              timeout=10)
    assert time.monotonic() - started < 8, "refused by the header timeout, not the idle one"
    event = wait_for_event(action="refused", details__command="PROXY")
    assert "PROXY header" in event.details["reply"]


@pytest.mark.parametrize("junk", [
    b"PROXY TCP4 " + b"1" * 200 + b"\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    proxy_client.V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 60000) + b"\0" * 64,
    proxy_client.V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 4) + b"\0" * 4,
    b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n",
], ids=["v1-too-long", "garbage", "v2-too-long", "v2-short-addresses", "v1-bad-address"])
def test_oversized_or_garbage_header_is_closed_and_others_are_served(partner, proxied, junk):
    sock = socket.create_connection(("127.0.0.1", proxied.explicit_port), timeout=10)
    try:
        sock.sendall(junk)
        assert _closed_without_greeting(sock) == b""
    finally:
        sock.close()
    assert wait_for_event(action="refused", details__command="PROXY")
    proxy_client.login(proxied.explicit_port, proxy_client.v1_header(CLIENT),
                       "alice", partner.password).quit()


def test_slow_header_does_not_hold_the_loop(partner, gateway_factory):
    """A peer that sends half a header and stops never stalls another session."""
    slow = gateway_factory(proxy_protocol="v1", proxy_trusted=("127.0.0.1/32",),
                           proxy_timeout=6.0)
    stalled = socket.create_connection(("127.0.0.1", slow.explicit_port), timeout=10)
    try:
        stalled.sendall(proxy_client.v1_header(CLIENT)[:10])
        proxy_client.login(slow.explicit_port, proxy_client.v1_header(OTHER_CLIENT),
                           "alice", partner.password).quit()
        stalled.setblocking(False)
        with pytest.raises(BlockingIOError):
            stalled.recv(1, socket.MSG_PEEK)  # still waiting for the rest of its header
        assert _closed_without_greeting(stalled) == b""
    finally:
        stalled.close()
    assert wait_for_event(action="refused", details__command="PROXY",
                          details__reply="no PROXY header within 6 s")


@pytest.mark.parametrize(("mode", "trusted"), [("sometimes", []), ("any", ["not-a-net"])])
def test_junk_proxy_settings_are_reported_by_the_system_check(mode, trusted):
    from ftps_gateway import checks

    with override_settings(PROXY_PROTOCOL=mode, PROXY_TRUSTED=trusted):
        problems = checks.check_proxy_and_masquerade()
    assert [p.id for p in problems] == ["ftps_gateway.E004"]


@VERSIONS
def test_header_arriving_byte_by_byte_is_read_exactly(version):
    """The reader takes the header and not one byte of what follows (a ClientHello)."""
    from ftps_gateway.proxy_protocol import HeaderBuffer, ProxyPolicy

    header = proxy_client.HEADERS[version](CLIENT, port=50123)
    following = b"\x16\x03\x01 client hello"
    server, client = socket.socketpair()
    try:
        server.setblocking(False)
        buffer = HeaderBuffer(ProxyPolicy.build("any", []))
        found = None
        for byte in header:
            assert found is None, "complete before its last byte"
            client.sendall(bytes([byte]))
            found = buffer.step(server)
        client.sendall(following)
        assert found == (CLIENT, 50123)
        server.setblocking(True)
        server.settimeout(5)
        assert server.recv(100) == following
    finally:
        server.close()
        client.close()
