"""Outbound FTPS client: talk to a partner's server the way a careful desktop client does.

Built on `ftplib.FTP_TLS` with what it lacks for server-to-server work:

- the control connection's TLS session is resumed on every data connection (many servers,
  Portside's own gateway included, refuse a data connection that does not resume it);
- the server is verified by a CA bundle (with its name checked) or a pinned SHA-256
  certificate fingerprint, or both — never skipped — and a refusal happens right after the
  handshake, before a single FTP command or byte of file data is sent over TLS;
- FEAT is read once: HASH (SHA-256), REST STREAM, SIZE, MLST and MDTM are used when offered;
- every socket has a timeout, and errors come out as three kinds: `TlsVerificationFailed`,
  `RemoteRefused` (an FTP reply; 5xx is permanent) and `RemoteUnavailable` (network).

No Django here: the delivery services give it a `RemoteServer` and plaintext chunks.
"""

from __future__ import annotations

import ftplib
import hashlib
import hmac
import os
import posixpath
import select
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

BLOCK = 256 * 1024
Progress = Callable[[int], None]


class FtpsError(Exception):
    """Base of the client's errors; the message is safe to record."""


class TlsVerificationFailed(FtpsError):
    """The server's certificate was refused; nothing was sent to it."""


class RemoteUnavailable(FtpsError):
    """The server could not be reached, or the connection broke or timed out."""


class RemoteRefused(FtpsError):
    """The server answered with an error reply."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply.strip()[:500])
        self.reply = reply.strip()
        self.code = self.reply[:3]

    @property
    def permanent(self) -> bool:
        """Return True for 5xx replies (RFC 959: retrying the same command will not help)."""
        return self.code.startswith("5")


@dataclass(frozen=True)
class RemoteServer:
    """Where a partner's server is, how to verify it, and how to log in."""

    host: str
    port: int
    username: str
    password: str = field(default="", repr=False)
    implicit: bool = False
    passive: bool = True
    ca_bundle_pem: str = ""
    pinned_sha256: str = ""
    server_name: str = ""
    client_cert_pem: str = ""
    client_key_pem: str = field(default="", repr=False)
    timeout: float = 60.0


@dataclass(frozen=True)
class Features:
    """What the server announced in its FEAT reply."""

    lines: tuple[str, ...] = ()

    def _has(self, name: str) -> bool:
        return any(line.upper() == name for line in self.lines)

    @property
    def rest_stream(self) -> bool:
        return self._has("REST STREAM")

    @property
    def size(self) -> bool:
        return self._has("SIZE")

    @property
    def mdtm(self) -> bool:
        return self._has("MDTM")

    @property
    def mlst(self) -> bool:
        return any(line.upper().startswith("MLST") for line in self.lines)

    def _hash_algorithms(self) -> list[str]:
        for line in self.lines:
            if line.upper().startswith("HASH "):
                return [a.strip().upper() for a in line[5:].split(";") if a.strip()]
        return []

    @property
    def hash_sha256(self) -> bool:
        return any(a.rstrip("*") == "SHA-256" for a in self._hash_algorithms())

    @property
    def hash_sha256_selected(self) -> bool:
        return "SHA-256*" in self._hash_algorithms()


@dataclass(frozen=True)
class Transferred:
    """What one data transfer moved: bytes, their SHA-256, and the server's final reply."""

    bytes: int
    sha256: str
    reply: str
    offset: int = 0


@dataclass(frozen=True)
class RemoteEntry:
    """A file in a remote folder."""

    name: str
    size: int | None
    modified: str = ""


@contextmanager
def _translated() -> Iterator[None]:
    """Turn ftplib, ssl and socket errors into the client's three kinds."""
    try:
        yield
    except FtpsError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise TlsVerificationFailed(f"server certificate refused: {exc.verify_message or exc}"
                                    ) from None
    except (ftplib.error_perm, ftplib.error_temp, ftplib.error_reply) as exc:
        raise RemoteRefused(str(exc)) from None
    except ftplib.error_proto as exc:
        raise RemoteUnavailable(f"unexpected reply: {exc}"[:500]) from None
    except TimeoutError:
        raise RemoteUnavailable("timed out") from None
    except (OSError, EOFError) as exc:
        raise RemoteUnavailable(f"{type(exc).__name__}: {exc}"[:500]) from None


@contextmanager
def _memory_file(text: str) -> Iterator[str]:
    """Yield a path to an in-memory file holding text (a private key never touches disk)."""
    fd = os.memfd_create("portside-client-credential", os.MFD_CLOEXEC)
    try:
        os.write(fd, text.encode())
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def tls_context(server: RemoteServer) -> ssl.SSLContext:
    """Return a client context verifying the server by CA bundle, or ready for pinning."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if server.ca_bundle_pem:
        context.load_verify_locations(cadata=server.ca_bundle_pem)
    else:
        if not server.pinned_sha256:
            raise TlsVerificationFailed("no CA bundle and no pinned fingerprint: refusing to "
                                        "connect without verifying the server")
        # The pin is checked right after each handshake (_Session.check_pin).
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if server.client_cert_pem:
        with _memory_file(server.client_cert_pem + server.client_key_pem) as path:
            context.load_cert_chain(path)
    return context


def certificate_sha256(sock: ssl.SSLSocket) -> str:
    """Return the SHA-256 of the peer's certificate as lowercase hex."""
    der = sock.getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest() if der else ""


class _Session(ftplib.FTP_TLS):
    """ftplib's FTP_TLS with session resumption, pinning, a server name and implicit TLS."""

    def __init__(self, server: RemoteServer, context: ssl.SSLContext) -> None:
        super().__init__(context=context, timeout=server.timeout)
        self.pin = server.pinned_sha256
        self.server_name = server.server_name or server.host
        self.data_resumed: list[bool] = []

    def check_pin(self, sock: ssl.SSLSocket) -> None:
        """Refuse a server whose certificate is not the pinned one, and hang up on it."""
        if not self.pin:
            return
        actual = certificate_sha256(sock)
        if not hmac.compare_digest(actual, self.pin):
            sock.close()
            raise TlsVerificationFailed(f"server certificate SHA-256 {actual or 'missing'} is "
                                        f"not the pinned {self.pin}")

    def _secure(self, raw: socket.socket) -> None:
        self.sock = self.context.wrap_socket(raw, server_hostname=self.server_name)
        self.check_pin(self.sock)
        self.file = self.sock.makefile("r", encoding=self.encoding)

    def connect_implicit(self, host: str, port: int) -> str:
        """Connect with TLS from the first byte, then read the greeting."""
        self.host, self.port = host, port
        raw = socket.create_connection((host, port), self.timeout)
        self.af = raw.family
        try:
            self._secure(raw)
        except BaseException:
            raw.close()
            raise
        self.welcome = self.getresp()
        return self.welcome

    def auth(self) -> str:
        reply = self.voidcmd("AUTH TLS")
        assert self.sock is not None
        self._secure(self.sock)
        return reply

    def ntransfercmd(self, cmd: str, rest: Any = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 - TLS follows
        if getattr(self, "_prot_p", False):
            assert isinstance(self.sock, ssl.SSLSocket)
            try:
                conn = self.context.wrap_socket(conn, server_hostname=self.server_name,
                                                session=self.sock.session)
                self.check_pin(conn)
            except BaseException:
                conn.close()
                raise
            self.data_resumed.append(bool(conn.session_reused))
        return conn, size


def _goodbye(conn: socket.socket) -> None:
    """End a data connection's TLS cleanly; a server that hangs up first is fine (its reply,
    then SIZE and HASH, say whether the file is whole)."""
    if isinstance(conn, ssl.SSLSocket):
        try:
            conn.unwrap()
        except (OSError, ValueError):
            pass


def _abandon(conn: socket.socket) -> None:
    """Close a data connection at once, without a TLS goodbye."""
    try:
        conn.close()
    except OSError:
        pass


class FtpsClient:
    """A logged-in FTPS session with a partner's server; use as a context manager."""

    def __init__(self, server: RemoteServer) -> None:
        self.server = server
        self.features = Features()
        self._ftp: _Session | None = None
        self._broken = False
        self.reused = False  # carried over from an earlier delivery (deliveries.session)

    def __enter__(self) -> FtpsClient:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def ftp(self) -> _Session:
        if self._ftp is None:
            raise RemoteUnavailable("not connected")
        return self._ftp

    def connect(self) -> None:
        """Connect, verify the server, log in, protect the data channel, read FEAT."""
        server = self.server
        with _translated():
            session = _Session(server, tls_context(server))
            self._ftp = session
            try:
                if server.implicit:
                    session.connect_implicit(server.host, server.port)
                else:
                    session.connect(server.host, server.port)
                    session.auth()
                ftplib.FTP.login(session, server.username, server.password)  # noqa: S321
                session.prot_p()
                session.voidcmd("TYPE I")
                session.set_pasv(server.passive)
                self.features = self._read_features()
            except BaseException:
                self._broken = True
                self.close()
                raise

    def begin_attempt(self, *, reused: bool) -> None:
        """Start a new delivery's record of the session (its own data connections)."""
        self.reused = reused
        self.ftp.data_resumed.clear()

    def still_open(self) -> bool:
        """Return whether the session can carry another command: nothing unread on the
        control connection (a stray reply would answer the next command) and NOOP
        answered 200."""
        if self._ftp is None or self._broken:
            return False
        sock = self._ftp.sock
        try:
            if sock is None or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return False
            if select.select([sock], [], [], 0)[0]:
                return False  # a reply nobody asked for, or the server hung up
            return self._ftp.sendcmd("NOOP").startswith("200")
        except (ftplib.Error, OSError, EOFError, ValueError):
            self._broken = True
            return False

    def _read_features(self) -> Features:
        try:
            reply = self.ftp.sendcmd("FEAT")
        except (ftplib.error_perm, ftplib.error_temp):
            return Features()
        return Features(tuple(line.strip() for line in reply.splitlines()[1:-1]
                              if line.strip()))

    @property
    def tls(self) -> dict[str, Any]:
        """Describe the TLS in use, for the attempt's record."""
        sock = self.ftp.sock
        version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        cipher = sock.cipher() if isinstance(sock, ssl.SSLSocket) else None
        return {"version": version, "cipher": cipher[0] if cipher else None,
                "data_sessions_resumed": list(self.ftp.data_resumed),
                "session_reused": self.reused}

    def close(self) -> None:
        """Say QUIT when the session is healthy, then close."""
        if self._ftp is None:
            return
        session, self._ftp = self._ftp, None
        try:
            if not self._broken:
                session.voidcmd("QUIT")
        except (ftplib.Error, OSError, EOFError):
            pass
        finally:
            session.close()

    # --- file operations -------------------------------------------------------------------

    def size(self, path: str) -> int | None:
        """Return a remote file's size, or None when it does not exist (or SIZE is absent)."""
        with _translated():
            try:
                reply = self.ftp.sendcmd(f"SIZE {path}")
            except ftplib.error_perm:
                return None
        try:
            return int(reply[3:].strip())
        except ValueError:
            raise RemoteUnavailable(f"unexpected SIZE reply: {reply[:200]}") from None

    def sha256(self, path: str) -> str | None:
        """Return a remote file's SHA-256 by HASH, or None when the server cannot tell."""
        if not self.features.hash_sha256:
            return None
        with _translated():
            if not self.features.hash_sha256_selected:
                self.ftp.sendcmd("OPTS HASH SHA-256")
                self.features = Features((*self.features.lines, "HASH SHA-256*"))
            try:
                reply = self.ftp.sendcmd(f"HASH {path}")
            except ftplib.error_perm:
                return None
        parts = reply.split()
        if len(parts) < 4 or parts[1].upper() != "SHA-256":
            raise RemoteUnavailable(f"unexpected HASH reply: {reply[:200]}")
        return parts[3].lower()

    def mdtm(self, path: str) -> str:
        """Return a remote file's modification time (YYYYMMDDHHMMSS), or ""."""
        if not self.features.mdtm:
            return ""
        with _translated():
            try:
                return self.ftp.sendcmd(f"MDTM {path}")[3:].strip()
            except ftplib.error_perm:
                return ""

    def rename(self, source: str, target: str) -> str:
        """Rename a remote file (RNFR, RNTO); return the final reply."""
        with _translated():
            return self.ftp.rename(source, target)

    def delete(self, path: str) -> str:
        """Delete a remote file."""
        with _translated():
            return self.ftp.delete(path)

    def make_folder(self, path: str) -> None:
        """Create a remote folder (an existing one is fine)."""
        with _translated():
            try:
                self.ftp.mkd(path)
            except ftplib.error_perm:
                pass

    def files(self, folder: str) -> list[RemoteEntry]:
        """List the plain files of a remote folder (MLSD when offered, else NLST + SIZE)."""
        with _translated():
            if self.features.mlst:
                return [RemoteEntry(posixpath.basename(name), _int(facts.get("size")),
                                    facts.get("modify", ""))
                        for name, facts in self.ftp.mlsd(folder)
                        if facts.get("type", "file").lower() == "file"]
            try:
                names = self.ftp.nlst(folder)
            except ftplib.error_perm as exc:
                if str(exc).startswith("550"):
                    return []  # many servers answer an empty folder with 550
                raise
        entries = []
        for name in names:
            path = posixpath.join(folder, posixpath.basename(name))
            size = self.size(path)
            if size is not None:
                entries.append(RemoteEntry(posixpath.basename(name), size, self.mdtm(path)))
        return entries

    # --- transfers -------------------------------------------------------------------------

    def upload(self, path: str, chunks: Iterable[bytes], *, offset: int = 0,
               progress: Progress | None = None) -> Transferred:
        """Send chunks as a file (from offset, with REST, when resuming); return the receipt.

        An exception from progress stops the transfer; the session is unusable afterwards.
        """
        hasher, sent = hashlib.sha256(), 0
        with _translated():
            conn, _ = self.ftp.ntransfercmd(f"STOR {path}", offset or None)
            try:
                for chunk in chunks:
                    conn.sendall(chunk)
                    hasher.update(chunk)
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent)
                _goodbye(conn)
            except BaseException:
                self._broken = True
                _abandon(conn)
                raise
            conn.close()
            reply = self.ftp.voidresp()
        return Transferred(sent, hasher.hexdigest(), reply, offset)

    def download(self, path: str, sink: Callable[[bytes], object], *,
                 progress: Progress | None = None) -> Transferred:
        """Receive a file into sink; return how many bytes, their SHA-256 and the reply."""
        hasher, received = hashlib.sha256(), 0
        with _translated():
            conn, _ = self.ftp.ntransfercmd(f"RETR {path}")
            try:
                while data := conn.recv(BLOCK):
                    sink(data)
                    hasher.update(data)
                    received += len(data)
                    if progress is not None:
                        progress(received)
                _goodbye(conn)
            except BaseException:
                self._broken = True
                _abandon(conn)
                raise
            conn.close()
            reply = self.ftp.voidresp()
        return Transferred(received, hasher.hexdigest(), reply)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def server_certificate(host: str, port: int, *, implicit: bool, timeout: float = 15,
                       server_name: str = "") -> tuple[str, bytes]:
    """Return the SHA-256 fingerprint and DER of a server's certificate, trusting nothing.

    For an admin to compare with what the partner says before pinning it: no login, and
    nothing is sent after the handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with _translated():
        raw = socket.create_connection((host, port), timeout)
        try:
            if not implicit:
                with raw.makefile("rb") as replies:
                    _expect(replies, "220")
                    raw.sendall(b"AUTH TLS\r\n")
                    _expect(replies, "234")
            with context.wrap_socket(raw, server_hostname=server_name or host) as sock:
                der = sock.getpeercert(binary_form=True) or b""
        finally:
            raw.close()
    return hashlib.sha256(der).hexdigest(), der


def _expect(replies: Any, code: str) -> None:
    """Read one (possibly multi-line) reply and refuse anything but the expected code."""
    first = line = replies.readline(8192).decode("utf-8", "replace")
    if first[3:4] == "-":
        while line and not line.startswith(first[:3] + " "):
            line = replies.readline(8192).decode("utf-8", "replace")
    if not first.startswith(code):
        raise RemoteRefused(first or "connection closed")
