"""The data channel's byte path for file transfers: large blocks, no per-piece copies.

Hand-written rather than asynchat's producer machinery because a single stream is bound
by the loop thread's CPU (docs/PERFORMANCE.md, "Single-stream upload and download"):

* sending, asynchat copies the unsent rest of each 256 KiB piece after a partial send and
  pyftpdlib's TLS mixin copies every memoryview into bytes; here one 256 KiB plaintext
  block (an at-rest chunk) is decrypted straight into a reused buffer and handed to
  SSL_write as a view, in a loop until the socket is full or this event's share is sent.
  pyOpenSSL turns on SSL_MODE_ENABLE_PARTIAL_WRITE, which makes SSL_write return after
  each 16 KiB record: a download's connection turns it off (`whole_writes`), so one call
  encrypts and sends a whole piece, up to 16 records, and a full socket (WantWrite) is
  retried with the same piece, as OpenSSL requires (ACCEPT_MOVING_WRITE_BUFFER lets the
  retry pass a new view of the same bytes);
* receiving, SSL_read gives at most one 16 KiB record a call: the records waiting are
  gathered into one block per loop pass, so the upload (quota, SHA-256, encryption,
  pwrite) runs once per block instead of once per record. (Swapping the socket BIO for
  memory BIOs, one large recv() then SSL_read from memory, measured no better: the
  copies into and out of the memory BIO cost what the saved read syscalls did.)

The TLS error handling mirrors pyftpdlib's SSLConnectionMixin.send/recv, except that the
end of the stream is reported to the caller instead of closing the channel at once: bytes
gathered before it must be written before the upload is handed over.
"""

from __future__ import annotations

import errno
import typing
import weakref
from typing import Any

from OpenSSL import SSL
from pyftpdlib.exceptions import _RetryError
from pyftpdlib.ioloop import _ERRNOS_DISCONNECTED, _ERRNOS_RETRY

from ftps_gateway.transfer_files import DownloadFile

try:  # pyOpenSSL's binding: not public, so each use below has a fallback without it
    from OpenSSL._util import ffi as _ssl_ffi
    from OpenSSL._util import lib as _ssl_lib
except ImportError:  # pragma: no cover - another pyOpenSSL
    _ssl_ffi = _ssl_lib = None

BLOCK = 1024 * 1024  # plaintext gathered per loop pass, receiving
# Sending: one at-rest chunk. Measured against 1 MiB: the same CPU per GB for one stream,
# more aggregate MB/s with 20 and 200 sessions, and 150 MB less RSS at 200 sessions.
SEND_BLOCK = 256 * 1024
RECORD = 16 * 1024  # the most one SSL_read returns
# What one loop pass sends to all its downloads together, shared out between them: one
# writable event sends a download's share, then the loop moves on (as nginx's
# sendfile_max_chunk). A lone download sends 1 MiB per event (fewer loop passes per GB);
# 100 downloads on one loop send 64 KiB each, so a pass, which an idle session's reply
# waits for, stays near 8 MiB of encryption (~10 ms) instead of growing with the count.
PASS_BUDGET = 8 * 1024 * 1024
SHARE_MIN, SHARE_MAX = 64 * 1024, 1024 * 1024


class StreamEnded(Exception):
    """The peer ended the stream (close_notify, FIN or reset)."""


def _ssl_pointer(sock: Any) -> Any:
    """Return a TLS connection's SSL pointer for pyOpenSSL's binding, or None.

    Neither is public: with another pyOpenSSL (no binding, no pointer, no error mapping)
    the callers below fall back to pyOpenSSL's own calls.
    """
    if _ssl_lib is None or not isinstance(sock, SSL.Connection):
        return None
    if not hasattr(sock, "_raise_ssl_error"):
        return None
    return getattr(sock, "_ssl", None)


def whole_writes(sock: Any) -> bool:
    """Let one SSL_write on this connection send a whole piece; return True if it could.

    pyOpenSSL has no public call to clear a mode, so this calls its binding's
    SSL_clear_mode (see _ssl_pointer); otherwise the connection keeps partial writes,
    which FileSender handles too, one record a call. One call per record cost ~0.1-0.2
    CPU s per GB sent (docs/PERFORMANCE.md).
    """
    ssl = _ssl_pointer(sock)
    if ssl is None or not hasattr(_ssl_lib, "SSL_clear_mode"):
        return False
    _ssl_lib.SSL_clear_mode(ssl, _ssl_lib.SSL_MODE_ENABLE_PARTIAL_WRITE)
    return True


def send_view(channel: Any, view: memoryview) -> int:
    """Send from a view without copying it; return the bytes written (0: try later)."""
    sock = channel.socket
    if not isinstance(sock, SSL.Connection):
        return _plain_send(channel, view)
    try:
        return int(sock.send(view))
    except SSL.WantReadError:
        channel._ssl_want_read = True
        return 0
    except SSL.WantWriteError:
        channel._ssl_want_write = True
        return 0
    except SSL.ZeroReturnError:
        channel.handle_close()
        return 0
    except SSL.SysCallError as err:
        errnum, errstr = err.args
        if errnum == errno.EWOULDBLOCK:
            return 0
        if errnum in _ERRNOS_DISCONNECTED or errstr == "Unexpected EOF":
            channel.handle_close()
            return 0
        raise


def _plain_send(channel: Any, view: memoryview) -> int:
    """Send on a data connection without TLS (allowed only where the policy permits)."""
    try:
        return int(channel.socket.send(view))
    except OSError as err:
        if err.errno in _ERRNOS_RETRY:
            return 0
        if err.errno in _ERRNOS_DISCONNECTED:
            channel.handle_close()
            return 0
        raise


def recv_into(channel: Any, view: memoryview) -> int:
    """Read what one call gives into view; raise _RetryError or StreamEnded."""
    sock = channel.socket
    if not isinstance(sock, SSL.Connection):
        return _plain_recv_into(sock, view)
    try:
        got = int(sock.recv_into(view, min(len(view), RECORD)))
    except SSL.Error as err:
        _read_failed(channel, err)
    if not got:
        raise StreamEnded
    return got


def _read_failed(channel: Any, err: SSL.Error) -> typing.NoReturn:
    """Turn an SSL_read error into _RetryError (try later), StreamEnded, or raise it."""
    if isinstance(err, SSL.WantReadError):
        channel._ssl_want_read = True
        raise _RetryError from err
    if isinstance(err, SSL.WantWriteError):
        channel._ssl_want_write = True
        raise _RetryError from err
    if isinstance(err, SSL.ZeroReturnError):
        raise StreamEnded from err
    if isinstance(err, SSL.SysCallError):
        errnum, errstr = err.args
        if errnum in _ERRNOS_DISCONNECTED or errstr == "Unexpected EOF":
            raise StreamEnded from err
    raise err


def _plain_recv_into(sock: Any, view: memoryview) -> int:
    try:
        got = int(sock.recv_into(view))
    except OSError as err:
        if err.errno in _ERRNOS_DISCONNECTED:
            raise StreamEnded from err
        if err.errno in _ERRNOS_RETRY:
            raise _RetryError from err
        raise
    if not got:
        raise StreamEnded
    return got


def gather(channel: Any, view: memoryview) -> tuple[int, bool]:
    """Read records into view until it is full or the socket is empty.

    Return the bytes gathered and whether the stream ended after them.
    """
    sock = channel.socket
    ssl = _ssl_pointer(sock)
    if ssl is not None:
        return _gather_direct(channel, sock, ssl, view)
    fill, size = 0, len(view)
    while fill < size:
        try:
            fill += recv_into(channel, view[fill:])
        except _RetryError:
            return fill, False
        except StreamEnded:
            return fill, True
    return fill, False


def _gather_direct(channel: Any, sock: Any, ssl: Any, view: memoryview) -> tuple[int, bool]:
    """gather() with SSL_read writing into view itself.

    pyOpenSSL's recv_into reads each record into a new temporary and copies it over, and
    checks its callbacks' errors after every call: reading straight into the block took
    ~0.1 CPU s off each GB received.
    """
    base = _ssl_ffi.from_buffer("char[]", view, require_writable=True)
    read = _ssl_lib.SSL_read
    fill, size = 0, len(view)
    while fill < size:
        got = read(ssl, base + fill, min(size - fill, RECORD))
        if got > 0:
            fill += got
            continue
        try:
            sock._raise_ssl_error(ssl, got)
            return fill, True  # SSL_ERROR_NONE without bytes: nothing more will come
        except SSL.Error as err:
            try:
                _read_failed(channel, err)
            except _RetryError:
                return fill, False
            except StreamEnded:
                return fill, True
    return fill, False


class FileSender:
    """Stream a download's plaintext through a data channel in large blocks."""

    def __init__(self, file: DownloadFile) -> None:
        self.file = file
        self._view = memoryview(bytearray(SEND_BLOCK))
        self._pos = self._end = 0
        # The length of a piece SSL_write could not finish: OpenSSL has taken some of its
        # records already and must be called again with the same bytes, not fewer.
        self._retry = 0
        _sending.add(self)

    def pump(self, channel: Any) -> bool:
        """Send this event's share, less if the socket fills or a limit pauses us.

        Return True at end of file.
        """
        bandwidth = channel.bandwidth
        limit = SEND_BLOCK if bandwidth is None else channel.ac_out_buffer_size
        budget = event_share()
        while budget > 0:
            if self._pos == self._end:
                self._end, self._pos = self.file.readinto(self._view), 0
                if not self._end:
                    _sending.discard(self)
                    return True
            size = self._retry or min(self._end - self._pos, limit, budget)
            sent = send_view(channel, self._view[self._pos : self._pos + size])
            if not sent:
                self._retry = size
                return False
            self._retry = 0
            self._pos += sent
            budget -= sent
            channel.tot_bytes_sent += sent
            if bandwidth is not None and bandwidth.sent(channel, sent):
                return False
            if channel._closed:
                return False
            # A short write is not a full socket: where partial writes are still on,
            # SSL_write returns after each 16 KiB record. Only a write that sends nothing
            # (WantWrite) means full.
        return False  # this event's share is sent: the rest at the next writable event


# The downloads of this process (one loop) with bytes left to send; an aborted one leaves
# with its channel.
_sending: weakref.WeakSet[FileSender] = weakref.WeakSet()


def event_share() -> int:
    """Return what one writable event of a download may send now."""
    return max(SHARE_MIN, min(SHARE_MAX, PASS_BUDGET // max(1, len(_sending))))
