"""A test client behind a pretend load balancer: PROXY protocol headers before FTPS.

The headers are written by hand here (not with the library the gateway parses them
with), so a parser bug cannot hide behind the same bug in the builder.
"""

from __future__ import annotations

import ftplib
import socket
import struct
from typing import Any

from tests.ftps_client import ImplicitFTP, ResumingFTP, client_context

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1_header(client: str, port: int = 40001, server: str = "127.0.0.1",
              server_port: int = 2121) -> bytes:
    """Return a PROXY v1 line naming an IPv4 client."""
    return f"PROXY TCP4 {client} {server} {port} {server_port}\r\n".encode()


def v2_header(client: str, port: int = 40001, server: str = "127.0.0.1",
              server_port: int = 2121) -> bytes:
    """Return a PROXY v2 header (PROXY command, TCP over IPv4) naming a client."""
    addresses = (socket.inet_aton(client) + socket.inet_aton(server)
                 + struct.pack("!HH", port, server_port))
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


HEADERS = {"v1": v1_header, "v2": v2_header}


class _Proxied:
    """Mixin: send a PROXY header first on the control and on every data connection."""

    header: bytes = b""
    data_header: bytes | None = None
    sock: Any
    host: str
    context: Any
    timeout: Any

    def _open(self, host: str, port: int) -> socket.socket:
        self.host = host
        raw = socket.create_connection((host, port), self.timeout)
        raw.sendall(self.header)
        return raw

    def ntransfercmd(self, cmd: str, rest: Any = None) -> tuple[socket.socket, int | None]:
        host, port = self.makepasv()  # type: ignore[attr-defined]
        conn = socket.create_connection((host, port), self.timeout)
        try:
            conn.sendall(self.header if self.data_header is None else self.data_header)
            if rest is not None:
                self.sendcmd(f"REST {rest}")  # type: ignore[attr-defined]
            resp = self.sendcmd(cmd)  # type: ignore[attr-defined]
            if resp[0] == "2":
                resp = self.getresp()  # type: ignore[attr-defined]
            if resp[0] != "1":
                raise ftplib.error_reply(resp)
        except BaseException:
            conn.close()
            raise
        if self._prot_p:  # type: ignore[attr-defined]
            conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                            session=self.sock.session)
        return conn, None


class ProxiedFTP(_Proxied, ResumingFTP):
    """Explicit FTPS behind a balancer."""

    def connect(self, host: str = "", port: int = 0, timeout: float = -999,
                source_address: Any = None) -> str:
        self.sock = self._open(host, port)
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


class ProxiedImplicitFTP(_Proxied, ImplicitFTP):
    """Implicit FTPS behind a balancer: the header comes before the TLS ClientHello."""

    def connect(self, host: str = "", port: int = 0, timeout: float = -999,
                source_address: Any = None) -> str:
        raw = self._open(host, port)
        self.af = raw.family
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


def connect(port: int, header: bytes, *, implicit: bool = False,
            data_header: bytes | None = None, timeout: float = 15) -> ResumingFTP:
    """Connect through the pretend balancer and secure the control connection."""
    cls = ProxiedImplicitFTP if implicit else ProxiedFTP
    ftp = cls(context=client_context(), timeout=timeout)
    ftp.header, ftp.data_header = header, data_header
    ftp.connect("127.0.0.1", port)
    if not implicit:
        ftp.auth()
    return ftp


def login(port: int, header: bytes, username: str, password: str, *, implicit: bool = False,
          data_header: bytes | None = None) -> ResumingFTP:
    """Connect through the balancer, log in and protect data; return the client."""
    ftp = connect(port, header, implicit=implicit, data_header=data_header)
    ftplib.FTP.login(ftp, username, password)
    ftp.prot_p()
    return ftp
