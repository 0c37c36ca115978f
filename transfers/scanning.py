"""Talk to a ClamAV daemon (clamd) over TCP or a unix socket.

Written by hand on the standard library because the `clamd` package on PyPI is unmaintained
(no release in years) and lacks what the pipeline needs: distinct errors for "scanner down"
versus "scanner refused", surviving clamd hanging up at StreamMaxLength, and AlertExceedsMax
findings reported apart from infections.

This module deliberately has no Django imports so the FTPS gateway, workers and tests can
use it without settings.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "MAX_CHUNK_SIZE",
    "ClamdAddress",
    "ClamdClient",
    "ClamdSession",
    "ScanResult",
    "ScannerError",
    "ScannerRefused",
    "ScannerUnavailable",
    "parse_clamd_address",
]

# Cap each INSTREAM chunk at 1 MiB: every send stays small, and an early refusal from clamd
# (StreamMaxLength) is noticed after at most one more chunk.
MAX_CHUNK_SIZE = 1 << 20

# Names clamd uses when AlertExceedsMax fires, e.g. Heuristics.Limits.Exceeded.MaxFileSize.
_LIMITS_PREFIX = "Heuristics.Limits.Exceeded"
# ExtendedDetectionInfo appends "(md5:size)" to hash matches; the bare name is what policy keys on.
_EXTENDED_INFO = re.compile(r"\([0-9a-fA-F]{32,64}:\d+\)$")
# clamd replies are one short line; anything bigger means we are not talking to clamd.
_MAX_REPLY = 64 * 1024
# sun_path is 108 bytes on Linux including the terminating NUL.
_MAX_UNIX_PATH = 107
_LENGTH = struct.Struct(">I")
_TERMINATOR = _LENGTH.pack(0)

# Any contiguous bytes-like chunk is accepted (bytes, bytearray, memoryview of bytes).
Chunk = bytes | bytearray | memoryview


class ScannerError(Exception):
    """Base class for every failure to get a verdict from clamd."""


class ScannerUnavailable(ScannerError):
    """clamd could not be reached, dropped the connection, or timed out."""


class ScannerRefused(ScannerError):
    """clamd answered with an error, e.g. the stream exceeded StreamMaxLength."""


@dataclass(frozen=True)
class ClamdAddress:
    """A parsed clamd address: either a TCP host/port or a unix socket path."""

    scheme: str  # "tcp" or "unix"
    host: str | None = None
    port: int | None = None
    path: str | None = None

    @property
    def family(self) -> socket.AddressFamily:
        """Return the socket family to connect with."""
        return socket.AF_UNIX if self.scheme == "unix" else socket.AF_INET

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def parse_clamd_address(value: str) -> ClamdAddress:
    """Parse `tcp://host:port` or `unix:///abs/path` into a ClamdAddress."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("clamd address must be a non-empty string")
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for non-numeric or out-of-range ports
    except ValueError as exc:
        raise ValueError(f"invalid clamd address {value!r}: {exc}") from None
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"invalid clamd address {value!r}: no query or fragment allowed")
    if parts.scheme == "tcp":
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"invalid clamd address {value!r}: no credentials allowed")
        if not parts.hostname:
            raise ValueError(f"invalid clamd address {value!r}: missing host")
        if port is None or port == 0:
            raise ValueError(f"invalid clamd address {value!r}: missing or zero port")
        if parts.path not in ("", "/"):
            raise ValueError(f"invalid clamd address {value!r}: unexpected path")
        return ClamdAddress(scheme="tcp", host=parts.hostname, port=port)
    if parts.scheme == "unix":
        # unix://relative would put the first path segment in netloc; insist on unix:///abs.
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"invalid clamd address {value!r}: use unix:///absolute/path")
        if len(os.fsencode(parts.path)) > _MAX_UNIX_PATH:
            raise ValueError(
                f"invalid clamd address {value!r}: unix socket path longer than "
                f"{_MAX_UNIX_PATH} bytes"
            )
        return ClamdAddress(scheme="unix", path=parts.path)
    raise ValueError(f"invalid clamd address {value!r}: scheme must be tcp:// or unix://")


@dataclass(frozen=True)
class ScanResult:
    """The verdict clamd gave for one stream."""

    clean: bool
    signature: str | None
    engine_version: str
    raw: str
    # AlertExceedsMax findings: not proven infected, not proven clean; the pipeline holds them.
    limits_exceeded: bool = False
    bytes_sent: int = 0

    @property
    def infected(self) -> bool:
        """Return True for a real finding (signature or heuristic), not a limits alert."""
        return not self.clean and not self.limits_exceeded


class ClamdClient:
    """A connection-per-command clamd client; safe to share between threads."""

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self.address = parse_clamd_address(address)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ClamdClient({str(self.address)!r}, timeout={self.timeout!r})"

    def ping(self) -> bool:
        """Return True if clamd answers PONG; raise ScannerUnavailable if unreachable."""
        return self._command(b"PING") == "PONG"

    def version(self) -> str:
        """Return clamd's engine and database version, e.g. `ClamAV 1.0.7/27000/<date>`."""
        reply = self._command(b"VERSION")
        if not reply.startswith("ClamAV"):
            raise ScannerError(f"unexpected VERSION reply from clamd: {reply!r}")
        return reply

    def scan_file(
        self, path: str | os.PathLike[str], chunk_size: int = MAX_CHUNK_SIZE
    ) -> ScanResult:
        """Stream a file to clamd in chunks and return the verdict."""
        return self.scan_stream(_read_chunks(Path(path), chunk_size))

    def scan_stream(self, chunks: Iterable[Chunk]) -> ScanResult:
        """Stream every chunk to clamd with INSTREAM and return the verdict."""
        # Ask for the version first: it fails fast (before we consume the caller's iterator)
        # when clamd is down, and it records which signature set produced this verdict.
        engine_version = self.version()
        sock = self._connect()
        try:
            sent = self._stream(sock, chunks)
            reply = self._read_reply(sock)
        finally:
            sock.close()
        return _parse_scan_reply(reply, engine_version, sent)

    # -- internals -----------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        """Open a socket to clamd with the client timeout applied."""
        addr = self.address
        try:
            if addr.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.timeout)
                    sock.connect(str(addr.path))
                except BaseException:
                    sock.close()
                    raise
            else:
                # create_connection resolves names and tries IPv6/IPv4 in turn.
                sock = socket.create_connection((addr.host, addr.port), timeout=self.timeout)
                # Length headers and the terminator are tiny writes; don't let Nagle hold them.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            raise ScannerUnavailable(f"cannot connect to clamd at {addr}: {exc}") from exc
        return sock

    def _command(self, command: bytes) -> str:
        """Send one null-terminated command and return its reply."""
        sock = self._connect()
        try:
            self._send(sock, b"z" + command + b"\0")
            return self._read_reply(sock)
        finally:
            sock.close()

    def _stream(self, sock: socket.socket, chunks: Iterable[Chunk]) -> int:
        """Send the INSTREAM command, every chunk and the terminator; return bytes sent."""
        self._send(sock, b"zINSTREAM\0")
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        sent = 0
        # Iterate outside any try/except so errors from the caller's iterator (e.g. a failing
        # disk read) propagate untouched instead of being mistaken for scanner failures.
        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            for start in range(0, len(view), MAX_CHUNK_SIZE):
                piece = view[start : start + MAX_CHUNK_SIZE]
                self._send(sock, _LENGTH.pack(len(piece)), piece)
                sent += len(piece)
                # clamd answers early (and then hangs up) when StreamMaxLength is hit; notice
                # that before pushing more data into a socket that is about to be reset.
                if poller.poll(0):
                    self._raise_early_reply(sock)
        self._send(sock, _TERMINATOR)
        return sent

    def _send(self, sock: socket.socket, *buffers: Chunk) -> None:
        """Send buffers completely, translating socket failures into scanner errors."""
        try:
            for buf in buffers:
                sock.sendall(buf)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # clamd closes the socket right after replying "size limit exceeded"; the reply
            # usually still sits in our receive buffer, so try to read it before giving up.
            reply = self._salvage_reply(sock)
            if reply is not None and _is_error(reply):
                raise ScannerRefused(f"clamd refused the stream: {reply}") from exc
            raise ScannerUnavailable(
                f"clamd at {self.address} closed the connection mid-stream: {exc}"
            ) from exc
        except TimeoutError as exc:
            raise ScannerUnavailable(
                f"timed out after {self.timeout}s sending to clamd at {self.address}"
            ) from exc
        except OSError as exc:
            raise ScannerUnavailable(f"error sending to clamd at {self.address}: {exc}") from exc

    def _raise_early_reply(self, sock: socket.socket) -> None:
        """Read a reply clamd sent before the stream ended and raise accordingly."""
        reply = self._read_reply(sock)
        if _is_error(reply):
            raise ScannerRefused(f"clamd refused the stream: {reply}")
        raise ScannerError(f"clamd replied before the stream ended: {reply!r}")

    def _salvage_reply(self, sock: socket.socket) -> str | None:
        """Return whatever reply is still readable after a failed send, or None."""
        try:
            sock.settimeout(min(self.timeout, 2.0))
            return self._read_reply(sock)
        except (ScannerError, OSError):
            return None

    def _read_reply(self, sock: socket.socket) -> str:
        """Read one null-terminated reply (or until EOF) and return it stripped."""
        data = bytearray()
        while True:
            _quick_ack(sock)
            try:
                part = sock.recv(4096)
            except TimeoutError as exc:
                raise ScannerUnavailable(
                    f"timed out after {self.timeout}s waiting for clamd at {self.address}"
                ) from exc
            except OSError as exc:
                raise ScannerUnavailable(
                    f"error reading from clamd at {self.address}: {exc}"
                ) from exc
            if not part:
                break
            data += part
            if b"\0" in part or len(data) > _MAX_REPLY:
                break
        reply = bytes(data).split(b"\0", 1)[0].decode("utf-8", "replace").strip()
        if not reply:
            raise ScannerUnavailable(
                f"clamd at {self.address} closed the connection without a reply"
            )
        return reply


class ClamdSession:
    """One clamd connection kept open across scans (IDSESSION), for a worker process.

    A small file's scan was two connections (VERSION, then INSTREAM); a session asks both
    on one that stays open. clamd closes an idle session (IdleTimeout) and a restart drops
    it: a reused connection that fails before the stream starts is replaced once, so no
    chunk of the caller's iterator is lost; a timeout is not retried (a hung clamd would
    otherwise cost twice the timeout). One scan at a time; a forked child opens its own.
    """

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self._client = ClamdClient(address, timeout=timeout)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._pid = 0
        self._sent = 0  # commands sent on this session: clamd numbers its replies so

    def __repr__(self) -> str:
        return f"ClamdSession({str(self._client.address)!r}, timeout={self._client.timeout!r})"

    def scan_stream(self, chunks: Iterable[Chunk]) -> ScanResult:
        """Stream every chunk to clamd with INSTREAM on the session and return the verdict."""
        with self._lock:
            engine_version = self._version()
            try:
                sent = self._client._stream(self._live(), chunks)
                self._sent += 1
                return _parse_scan_reply(self._reply(), engine_version, sent)
            except BaseException:
                self.close()  # clamd may hang up after an error reply; start afresh next time
                raise

    def close(self) -> None:
        """Close the connection (the next scan opens a new one)."""
        if self._sock is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None

    def _version(self) -> str:
        """Ask VERSION, opening the session first, or again once if clamd dropped it."""
        reused = self._sock is not None and self._pid == os.getpid()
        if not reused:
            self._open()
        try:
            return self._ask_version()
        except ScannerUnavailable as exc:
            self.close()
            if not reused or isinstance(exc.__cause__, TimeoutError):
                raise
        self._open()
        try:
            return self._ask_version()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        """Connect and start an IDSESSION."""
        self._sock = None  # a socket inherited over fork belongs to the parent: leave it
        sock = self._client._connect()
        try:
            self._client._send(sock, b"zIDSESSION\0")
        except BaseException:
            sock.close()
            raise
        self._sock, self._pid, self._sent = sock, os.getpid(), 0

    def _ask_version(self) -> str:
        """Send VERSION on the session and return the engine and database version."""
        self._client._send(self._live(), b"zVERSION\0")
        self._sent += 1
        reply = self._reply()
        if not reply.startswith("ClamAV"):
            raise ScannerError(f"unexpected VERSION reply from clamd: {reply!r}")
        return reply

    def _live(self) -> socket.socket:
        """Return the open session socket."""
        if self._sock is None:
            raise ScannerUnavailable("no clamd session")
        return self._sock

    def _reply(self) -> str:
        """Read the reply to the last command, without clamd's `<n>: ` session prefix."""
        reply = self._client._read_reply(self._live())
        prefix = f"{self._sent}: "
        return reply.removeprefix(prefix)


def _quick_ack(sock: socket.socket) -> None:
    """Acknowledge what arrives at once (Linux; Linux leaves quick-ack mode by itself).

    In a session clamd writes a reply's `<n>: ` prefix and its text separately; with our
    ACK delayed, its Nagle held the text back ~40 ms per reply.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6) and hasattr(socket, "TCP_QUICKACK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _read_chunks(path: Path, chunk_size: int) -> Iterator[bytes]:
    """Yield a file's contents in chunks without loading it whole."""
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_size):
            yield chunk


def _is_error(reply: str) -> bool:
    """Return True if a clamd reply is an ERROR line."""
    return reply == "ERROR" or reply.endswith(" ERROR")


def _parse_scan_reply(reply: str, engine_version: str, sent: int) -> ScanResult:
    """Turn an INSTREAM reply such as `stream: Eicar-Signature FOUND` into a ScanResult."""
    if _is_error(reply):
        raise ScannerRefused(f"clamd refused the stream: {reply}")
    # Replies look like "stream: <status>"; split once so odd signature names survive.
    _, sep, status = reply.partition(": ")
    if not sep:
        raise ScannerError(f"unexpected INSTREAM reply from clamd: {reply!r}")
    if status == "OK":
        return ScanResult(
            clean=True, signature=None, engine_version=engine_version, raw=reply, bytes_sent=sent
        )
    if status.endswith(" FOUND"):
        signature = _EXTENDED_INFO.sub("", status[: -len(" FOUND")]).strip()
        return ScanResult(
            clean=False,
            signature=signature,
            engine_version=engine_version,
            raw=reply,
            limits_exceeded=signature.startswith(_LIMITS_PREFIX),
            bytes_sent=sent,
        )
    raise ScannerError(f"unexpected INSTREAM reply from clamd: {reply!r}")
