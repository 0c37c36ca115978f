"""End-to-end: data connections — the passive range, active mode and its bounce protection."""

from __future__ import annotations

import ftplib
import io
import random
import re
import socket

import pytest

from ftps_gateway.data_channel import RangePassiveDTP
from tests.audit_log import wait_for_count, wait_for_event
from tests.ftps_client import client_context, login, reply
from transfers.models import StoredFile

pytestmark = pytest.mark.django_db(transaction=True)


def _passive_port(answer: str) -> int:
    """Return the port of a 227 or 229 reply."""
    if answer.startswith("229"):
        return int(re.search(r"\|\|\|(\d+)\|", answer).group(1))  # type: ignore[union-attr]
    numbers = re.search(r"\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)", answer)
    assert numbers, answer
    return int(numbers.group(5)) * 256 + int(numbers.group(6))


def _occupy_consecutive_ports(count: int) -> list[socket.socket]:
    """Bind and listen on `count` consecutive free loopback ports; return the sockets."""
    for _ in range(200):
        base = random.randint(42000, 60000)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
                sock.listen(1)
            return held
        except OSError:
            for sock in held:
                sock.close()
    raise AssertionError("could not find free consecutive ports")


# --- passive mode -----------------------------------------------------------------------------


def test_passive_ports_come_from_the_configured_range(partner, gateway):
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        for command in ("PASV", "EPSV") * 3:
            assert 41000 <= _passive_port(reply(ftp, command)) <= 41199
    finally:
        ftp.quit()


@pytest.fixture
def tiny_range(gateway_factory):
    """A gateway whose passive range is two ports, both held by another program."""
    held = _occupy_consecutive_ports(2)
    low = held[0].getsockname()[1]
    gateway = gateway_factory(passive_ports=(low, low + 1))
    yield gateway, held
    for sock in held:
        sock.close()


def test_exhausted_passive_range_answers_425(partner, tiny_range):
    gateway, _ = tiny_range
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        for command in ("PASV", "EPSV") * 2:
            assert reply(ftp, command).startswith("425"), command
        assert ftp.voidcmd("NOOP").startswith("200")
    finally:
        ftp.quit()


def test_freed_passive_port_is_used_again(partner, tiny_range):
    gateway, held = tiny_range
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        assert reply(ftp, "PASV").startswith("425")
        freed = held[1].getsockname()[1]
        held[1].close()
        assert _passive_port(reply(ftp, "PASV")) == freed
    finally:
        ftp.quit()


def test_a_port_taken_between_bind_and_listen_is_swapped_for_another(
    partner, gateway_factory, monkeypatch
):
    # Another gateway worker's PASV: bound with SO_REUSEADDR (so both binds succeed), it
    # listens between our bind and our listen, which then fails with EADDRINUSE.
    held = _occupy_consecutive_ports(2)
    low = held[0].getsockname()[1]
    for sock in held:
        sock.close()
    rival = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    rival.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    rival.bind(("127.0.0.1", low))
    raced: list[int] = []
    real_bind = RangePassiveDTP.bind

    def bind_then_rival_listens(self: RangePassiveDTP, addr: tuple) -> None:
        real_bind(self, addr)
        if addr[1] == low and not raced:
            rival.listen(1)
            raced.append(low)

    monkeypatch.setattr(RangePassiveDTP, "bind", bind_then_rival_listens)
    gateway = gateway_factory(passive_ports=(low, low + 1))
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        for _ in range(40):  # the range's port is picked at random: until the race happens
            port = _passive_port(reply(ftp, "PASV"))
            if raced:
                assert port == low + 1
                break
        assert raced, "the rival's port was never picked"
        assert _passive_port(reply(ftp, "PASV")) == low + 1
        ftp.storbinary("STOR raced.bin", io.BytesIO(b"through the other port"))
    finally:
        ftp.quit()
        rival.close()
    assert StoredFile.objects.filter(path="/raced.bin").exists()


def test_passive_range_exhausted_by_other_sessions_answers_425(partner, gateway_factory):
    held = _occupy_consecutive_ports(2)
    low = held[0].getsockname()[1]
    for sock in held:
        sock.close()
    gateway = gateway_factory(passive_ports=(low, low + 1))
    sessions = [login(gateway.explicit_port, partner.username, partner.password)
                for _ in range(3)]
    try:
        ports = {_passive_port(reply(sessions[0], "PASV")),
                 _passive_port(reply(sessions[1], "PASV"))}
        assert ports == {low, low + 1}
        assert reply(sessions[2], "PASV").startswith("425")
    finally:
        for ftp in sessions:
            ftp.close()


def test_transfer_works_at_the_edge_of_a_tiny_range(partner, gateway_factory):
    held = _occupy_consecutive_ports(1)
    port = held[0].getsockname()[1]
    held[0].close()
    gateway = gateway_factory(passive_ports=(port, port))
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        for name in ("a.txt", "b.txt"):
            ftp.storbinary(f"STOR {name}", io.BytesIO(b"x"))
        assert sorted(ftp.nlst()) == ["a.txt", "b.txt"]
    finally:
        ftp.quit()


# --- active mode ------------------------------------------------------------------------------


def test_active_mode_is_refused_when_off(partner, gateway):
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        for command in ("PORT 127,0,0,1,195,80", "EPRT |1|127.0.0.1|50000|"):
            answer = reply(ftp, command)
            assert answer.startswith("502") and "PASV" in answer, answer
    finally:
        ftp.quit()
    assert wait_for_event(action="refused", details__command="EPRT")


@pytest.fixture
def active_gateway(gateway_factory):
    """A gateway with active mode turned on."""
    return gateway_factory(active_mode=True)


def test_active_mode_transfer_works_when_on(partner, active_gateway):
    ftp = login(active_gateway.explicit_port, partner.username, partner.password)
    try:
        ftp.set_pasv(False)
        final = ftp.storbinary("STOR active.txt", io.BytesIO(b"over an active connection"))
        assert final.startswith("226")
        assert ftp.nlst() == ["active.txt"]
    finally:
        ftp.quit()
    assert StoredFile.objects.get(path="/active.txt").size == 25


def test_bounce_port_is_refused_when_active_mode_is_on(partner, active_gateway):
    commands = ["PORT 10,1,2,3,195,80",        # someone else's address
                "EPRT |1|192.0.2.7|50000|",
                "PORT 127,0,0,1,0,21",         # a privileged port on the client's own address
                "EPRT |1|127.0.0.1|25|"]
    ftp = login(active_gateway.explicit_port, partner.username, partner.password)
    try:
        answers = {command: reply(ftp, command) for command in commands}
        assert all(a.startswith("501") for a in answers.values()), answers
        assert ftp.voidcmd("NOOP").startswith("200")
    finally:
        ftp.quit()
    refused = wait_for_count(4, action="refused", details__command="PORT")
    assert any("10.1.2.3:50000" in event.details["reply"] for event in refused)


def test_bounce_port_never_connects_to_the_target(partner, active_gateway):
    target = _occupy_consecutive_ports(1)[0]
    target.settimeout(0.5)
    port = target.getsockname()[1]
    ftp = login(active_gateway.explicit_port, partner.username, partner.password)
    try:
        assert reply(ftp, f"EPRT |1|127.0.0.2|{port}|").startswith("501")
        ftp.voidcmd("NOOP")
        with pytest.raises(TimeoutError):
            target.accept()
    finally:
        ftp.quit()
        target.close()


def test_active_mode_before_prot_p_is_refused(partner, active_gateway):
    ftp = ftplib.FTP_TLS(context=client_context(), timeout=15)
    ftp.connect("127.0.0.1", active_gateway.explicit_port)
    try:
        ftp.auth()
        ftplib.FTP.login(ftp, partner.username, partner.password)
        assert reply(ftp, "PORT 127,0,0,1,195,80").startswith("534")
    finally:
        ftp.close()
    assert wait_for_event(action="refused", details__command="PORT")


def test_data_connection_from_another_address_is_refused(partner, gateway):
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        port = _passive_port(reply(ftp, "PASV"))
        intruder = socket.create_connection(("127.0.0.1", port), timeout=5,
                                            source_address=("127.0.0.2", 0))
        try:
            answer = ftp.getmultiline()
        finally:
            intruder.close()
        assert answer.startswith("425") and "foreign address" in answer
        assert ftp.nlst() == []  # the passive port stays open for the real client
    finally:
        ftp.quit()
    event = wait_for_event(action="refused", details__command="data-address")
    assert "127.0.0.2" in event.details["reply"]
