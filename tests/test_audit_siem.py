"""Audit events reach a SIEM as JSON lines and RFC 5424 syslog; an outage loses nothing."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from audit import chain, siem

pytestmark = pytest.mark.django_db(transaction=True)


def _events(n: int) -> None:
    for i in range(n):
        chain.append(actor="alice", action="login", outcome="failure", details={"i": i})


def _read_frames(conn: socket.socket) -> list[bytes]:
    """Read octet-counted syslog frames until the sender closes."""
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    frames = []
    while data:
        length, _, rest = data.partition(b" ")
        frames.append(rest[: int(length)])
        data = rest[int(length):]
    return frames


class Collector:
    """A syslog collector on loopback (TCP, optionally TLS) that keeps what it receives."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(10)
        self.port = self.server.getsockname()[1]
        self.context = context
        self.frames: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        if self.context is not None:
            conn = self.context.wrap_socket(conn, server_side=True)
        with conn:
            self.frames = _read_frames(conn)

    def close(self) -> None:
        self.thread.join(timeout=10)
        self.server.close()


def test_json_lines_file_receives_every_event_once_and_rotates(tmp_path):
    _events(30)
    sink = siem.JsonLinesFile(tmp_path / "audit.jsonl", max_bytes=2000, backups=3)
    assert siem.export_pending(sink, limit=10) >= 10
    _events(5)
    siem.export_pending(sink)
    assert siem.export_pending(sink) == 0  # nothing new: nothing sent twice
    files = sorted(tmp_path.glob("audit.jsonl*"))
    ids = [json.loads(line)["id"] for f in files for line in f.read_text().splitlines()]
    assert len(ids) == len(set(ids)) and len(files) > 1


def test_syslog_over_tcp_uses_rfc5424_with_octet_counting():
    _events(3)
    collector = Collector()
    siem.export_pending(siem.Syslog(f"tcp://127.0.0.1:{collector.port}"))
    collector.close()
    assert len(collector.frames) == 3
    first = collector.frames[0].decode()
    assert first.startswith("<108>1 ") and " portside - audit [portside@32473 " in first
    assert json.loads(first.split("\ufeff", 1)[1])["action"] == "login"


def test_syslog_over_udp_delivers_datagrams():
    _events(2)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    siem.export_pending(siem.Syslog(f"udp://127.0.0.1:{receiver.getsockname()[1]}"))
    got = [receiver.recv(65535) for _ in range(2)]
    receiver.close()
    assert all(message.startswith(b"<108>1 ") for message in got)


def _tls_pair(tmp_path) -> tuple[ssl.SSLContext, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, str(cert_path)


def test_syslog_over_tls_verifies_the_collector(tmp_path):
    _events(2)
    context, ca_file = _tls_pair(tmp_path)
    collector = Collector(context)
    siem.export_pending(siem.Syslog(f"tls://127.0.0.1:{collector.port}", ca_file=ca_file))
    collector.close()
    assert len(collector.frames) == 2


def test_an_outage_keeps_the_cursor_and_nothing_is_lost():
    _events(4)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with pytest.raises(OSError):
        siem.export_pending(siem.Syslog(f"tcp://127.0.0.1:{dead_port}"))
    collector = Collector()
    sink = siem.Syslog(f"tcp://127.0.0.1:{collector.port}")
    sink.name = f"syslog:tcp://127.0.0.1:{dead_port}"  # the same cursor as the failed sink
    siem.export_pending(sink)
    collector.close()
    assert len(collector.frames) == 4
