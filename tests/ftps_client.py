"""FTPS clients for tests: ftplib subclasses that behave like FileZilla and WinSCP.

Stock `ftplib.FTP_TLS` never resumes the control connection's TLS session on data
connections, which Portside requires by default; `ResumingFTP` passes `session=`.
"""

from __future__ import annotations

import ftplib
import socket
import ssl
from typing import Any


def client_context(cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    """Return a client context that trusts anything (tests use a throwaway server cert)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


class ResumingFTP(ftplib.FTP_TLS):
    """An FTP_TLS client that resumes the control session on every data connection."""

    def ntransfercmd(self, cmd: str, rest: Any = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                            session=self.sock.session)
        return conn, size


class ImplicitFTP(ResumingFTP):
    """Implicit FTPS: TLS from the first byte on the control connection."""

    def connect(self, host: str = "", port: int = 0, timeout: float = -999,
                source_address: Any = None) -> str:
        self.host, self.port = host, port
        if timeout != -999:
            self.timeout = timeout
        raw = socket.create_connection((host, port), self.timeout)
        self.af = raw.family
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


def login(port: int, username: str, password: str, *, implicit: bool = False,
          cert: tuple[str, str] | None = None, timeout: float = 15) -> ResumingFTP:
    """Connect, secure, log in, and switch to protected data; return the client."""
    cls = ImplicitFTP if implicit else ResumingFTP
    ftp = cls(context=client_context(cert), timeout=timeout)
    ftp.connect("127.0.0.1", port)
    if not implicit:
        ftp.auth()
    ftp.login(username, password) if implicit else ftplib.FTP.login(ftp, username, password)
    ftp.prot_p()
    return ftp
