"""FTPS clients for tests: ftplib subclasses that behave like FileZilla and WinSCP.

Stock `ftplib.FTP_TLS` never resumes the control connection's TLS session on data
connections, which Portside requires by default; `ResumingFTP` passes `session=`.
"""

from __future__ import annotations

import ftplib
import io
import socket
import ssl
import struct
from datetime import datetime
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
        if self._prot_p:  # type: ignore[attr-defined]
            control: Any = self.sock
            conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                            session=control.session)
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


def stock_login(port: int, username: str, password: str) -> ftplib.FTP_TLS:
    """Log in with the standard library's FTP_TLS (which never resumes the control
    connection's TLS session on data connections), with PROT P set."""
    ftp = ftplib.FTP_TLS(context=client_context(), timeout=15)
    ftp.connect("127.0.0.1", port)
    try:
        ftp.auth()
        ftplib.FTP.login(ftp, username, password)
        ftp.prot_p()
    except BaseException:
        ftp.close()
        raise
    return ftp


def greeting_refused(port: int) -> bool:
    """Return True when the server answers a plain connection with 421 (a banned address)."""
    plain = ftplib.FTP()
    try:
        plain.connect("127.0.0.1", port, timeout=15)
    except ftplib.error_temp as exc:
        return str(exc).startswith("421")
    finally:
        plain.close()
    return False


def reply(ftp: ftplib.FTP, command: str) -> str:
    """Send a command and return the server's reply, whatever its code."""
    ftp.putcmd(command)
    return ftp.getmultiline()


def raw_reply(ftp: ftplib.FTP, line: bytes) -> str:
    """Send raw bytes as one command line (ftplib refuses some) and return the reply."""
    assert ftp.sock is not None
    ftp.sock.sendall(line + b"\r\n")
    return ftp.getmultiline()


def cut_off(conn: socket.socket) -> None:
    """End a data connection with a TCP FIN but no TLS close_notify, as a cut cable would."""
    conn.shutdown(socket.SHUT_WR)  # SSLSocket.shutdown skips the TLS layer


def reset(conn: socket.socket) -> None:
    """Abort a data connection with a TCP RST (no close_notify, unread data discarded)."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class FileZillaLike(ResumingFTP):
    """Behaves like FileZilla or WinSCP: resumes TLS, lists with MLSD, uploads to
    `name.filepart`, renames it into place and sets the modification time with MFMT."""

    def upload(self, name: str, data: bytes, mtime: datetime) -> str:
        """Upload the way those clients do; return the STOR's final reply."""
        part = f"{name}.filepart"
        final = self.storbinary(f"STOR {part}", io.BytesIO(data))
        self.sendcmd(f"RNFR {part}")
        self.sendcmd(f"RNTO {name}")
        self.sendcmd(f"MFMT {mtime:%Y%m%d%H%M%S} {name}")
        return final

    def entries(self, path: str = "") -> dict[str, dict[str, str]]:
        """Return the MLSD facts of each entry of a folder, by name."""
        return dict(self.mlsd(path))


def connect_filezilla_like(port: int, username: str, password: str,
                           *, timeout: float = 15) -> FileZillaLike:
    """Log in the way FileZilla does: AUTH TLS, USER/PASS, PBSZ 0, PROT P, OPTS UTF8 ON."""
    ftp = FileZillaLike(context=client_context(), timeout=timeout)
    ftp.connect("127.0.0.1", port)
    ftp.auth()
    ftplib.FTP.login(ftp, username, password)
    ftp.prot_p()
    ftp.sendcmd("OPTS UTF8 ON")
    ftp.voidcmd("TYPE I")
    return ftp
