"""A partner's FTPS server for delivery tests: stock pyftpdlib TLS in a thread, on loopback.

Each server gets a fresh handler subclass (pyftpdlib's classes are never mutated), its own
IOLoop and a throwaway certificate, optionally issued by a throwaway CA. Variants cover what
Portside's own gateway does not: no REST, a refused STOR, a slow reader. Every command the
server received is recorded.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

USERNAME = "partner"
PASSWORD = "Remote-" + secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Pem:
    """A certificate (and its key) as PEM text and as files."""

    cert: x509.Certificate
    cert_pem: str
    key_pem: str
    cert_path: str
    key_path: str

    @property
    def sha256(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()


def make_certificate(folder: Path, name: str, *, issuer: Pem | None = None,
                     is_ca: bool = False, sans: tuple[str, ...] = ("127.0.0.1", "localhost"),
                     ) -> Pem:
    """Create a certificate for the names (self-signed, or issued by a CA) and its files."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key: Any = key
    signer_name = subject
    if issuer is not None:
        signer_key = serialization.load_pem_private_key(issuer.key_pem.encode(), None)
        signer_name = issuer.cert.subject
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(signer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if is_ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(signer_key, hashes.SHA256())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_text(cert_pem)
    key_path.write_text(key_pem)
    return Pem(cert, cert_pem, key_pem, str(cert_path), str(key_path))


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file on the partner's disk."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Behaviour:
    """What makes this partner's server special."""

    without: tuple[str, ...] = ()  # commands it does not know (e.g. "REST")
    refuse_stor: str | None = None  # reply to every STOR, e.g. "552 Exceeded storage allocation."
    read_delay: float = 0.0  # seconds to sleep per data-channel read (a slow partner)
    # Called in the server's thread with (command, argument) before the server handles it:
    # how a test makes the partner write to a file at an exact point of the conversation.
    on_command: Callable[[str, str], None] | None = None


@dataclass
class StockServer:
    """A running pyftpdlib TLS server; stop() and start() again on the same port."""

    root: Path
    certificate: Pem
    behaviour: Behaviour = field(default_factory=Behaviour)
    port: int = 0
    commands: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # with arguments (PASS hidden)
    _server: Any = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def _handler(self) -> type:
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.use_certificate_chain_file(self.certificate.cert_path)
        context.use_privatekey_file(self.certificate.key_path)
        authorizer = DummyAuthorizer()
        authorizer.add_user(USERNAME, PASSWORD, str(self.root), perm="elradfmwMT")
        commands, lines, behaviour = self.commands, self.lines, self.behaviour

        class SlowData(TLS_DTPHandler):
            # pyftpdlib binds DTPHandler.handle_read_event to the original handle_read at
            # class creation, so an override of handle_read alone is never called: slow
            # the event itself (once TLS is up, so handshakes stay quick).
            def handle_read_event(self) -> None:
                if behaviour.read_delay and self._ssl_established:
                    time.sleep(behaviour.read_delay)
                super().handle_read_event()

        class Handler(TLS_FTPHandler):
            ssl_context = context
            tls_control_required = True
            tls_data_required = True
            dtp_handler = SlowData
            proto_cmds = {k: v for k, v in TLS_FTPHandler.proto_cmds.items()
                          if k not in behaviour.without}
            timeout = 30

            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                commands.append(cmd)
                lines.append("PASS ****" if cmd == "PASS" else line)
                if behaviour.on_command is not None:
                    behaviour.on_command(cmd, arg)
                super().pre_process_command(line, cmd, arg)

            def ftp_STOR(self, file: str, mode: str = "w") -> None:
                if behaviour.refuse_stor:
                    self.respond(behaviour.refuse_stor)
                    return
                super().ftp_STOR(file, mode)

        Handler.authorizer = authorizer
        return Handler

    def start(self) -> StockServer:
        """Serve in a thread (on the same port as before, after a stop)."""
        self._stop.clear()
        self._server = FTPServer(("127.0.0.1", self.port), self._handler(), ioloop=IOLoop())
        self.port = self._server.address[1]
        self._thread = threading.Thread(target=self._serve, name="stock-ftps", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._server.ioloop.loop(timeout=0.05, blocking=False)
        self._server.close_all()

    def stop(self) -> None:
        """Stop serving and drop every connection; join the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            assert not self._thread.is_alive(), "stock FTPS server thread did not stop"
            self._thread = None
