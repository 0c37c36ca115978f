"""FTPS data connections: the passive listener and the data channel.

A data connection must resume its control connection's TLS session, reads several TLS
records per loop pass, claims quota off the loop and hands a finished upload back to the
control handler, which records it.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import sys
from typing import Any

from OpenSSL import SSL
from pyftpdlib.handlers import TLS_DTPHandler
from pyftpdlib.handlers.ftp.dispatchers import PassiveDTP

from ftps_gateway import proxy_protocol, replies, throttle, tls, tls_stream
from ftps_gateway.transfer_files import Producer, UploadFile
from mft.errors import PortsideError, TemporarilyUnavailable

log = logging.getLogger(__name__)
FIRST_BLOCK = 64 * 1024  # an upload's first gather; then tls_stream.BLOCK
_PYFTPDLIB_LOG = logging.getLogger("pyftpdlib")


class NoPassivePort(OSError):
    """Every port of the passive range is busy."""


class RangePassiveDTP(PassiveDTP):
    """A passive listener that never falls back to a port outside the configured range."""

    def bind(self, addr: tuple[Any, ...]) -> None:
        if addr[1] == 0 and self.cmd_channel.passive_ports is not None:
            self.close()
            raise NoPassivePort("no free passive port in the configured range")
        super().bind(addr)

    def listen(self, num: int) -> None:
        # pyftpdlib skips ports that fail with EPERM and then listens unbound, which
        # the kernel answers with a random port: never listen outside the range.
        ports = self.cmd_channel.passive_ports
        host, port = self.socket.getsockname()[:2]
        if ports is not None and port not in ports:
            self.close()
            raise NoPassivePort("no free passive port in the configured range")
        tried = {port}
        while True:
            try:
                super().listen(num)
                return
            except OSError as err:
                if ports is None or err.errno != errno.EADDRINUSE:
                    raise
            # Two sockets with SO_REUSEADDR may bind one port until one listens: another
            # gateway worker's PASV took this port between our bind and listen. Another.
            tried.add(self._rebind(host, [p for p in ports if p not in tried]))

    def _rebind(self, host: str, ports: list[int]) -> int:
        """Move to a fresh socket bound to a free port among `ports`; return the port."""
        family = self.socket.family
        self.del_channel()
        self.socket.close()
        self.create_socket(family, socket.SOCK_STREAM)
        self.set_reuse_addr()
        random.shuffle(ports)
        for port in ports:
            try:
                super().bind((host, port))
                return port
            except OSError as err:
                if err.errno != errno.EADDRINUSE:
                    raise
        self.close()
        raise NoPassivePort("no free passive port in the configured range")

    def handle_accepted(self, sock: Any, addr: Any) -> None:
        """Check a proxied session's data connection by its PROXY header's client."""
        if proxy_protocol.accept_data(self, sock, addr, super().handle_accepted):
            return
        if addr[0] != self.cmd_channel.remote_ip:  # pyftpdlib refuses it with a 425
            self.cmd_channel.audit_refusal("data-address", f"data connection from {addr[0]}")
        super().handle_accepted(sock, addr)


class DataChannel(TLS_DTPHandler):
    """A data connection: must resume its control connection's TLS session."""

    ac_in_buffer_size = 256 * 1024
    ac_out_buffer_size = 256 * 1024
    # Attributes pyftpdlib (untyped) sets; declared so the type checker knows them.
    file_obj: Any
    cmd_channel: Any
    _resp: Any

    def __init__(self, sock: Any, cmd_channel: Any) -> None:
        self._refusal: PortsideError | None = None
        self._held: bytes | None = None  # a piece waiting for its quota claim
        self._tls_refused = False
        self._upload_handed_over = False
        self._bandwidth_timer: Any = None
        self._sender: tls_stream.FileSender | None = None  # a binary download's byte path
        self._inbuf: memoryview | None = None  # an upload's block of gathered records
        # Small first: most connections carry small files, and a 1 MiB buffer per data
        # connection cost an allocation and page faults per file.
        self._inbuf_size = FIRST_BLOCK
        self._stream_ended = False  # the peer ended the stream after the gathered bytes
        self.bandwidth = throttle.for_user(cmd_channel.user)
        # Small files: without NODELAY the last segment of each file waits for an ACK.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        super().__init__(sock, cmd_channel)
        if self.bandwidth is not None:
            self.bandwidth.size_buffers(self)

    def __repr__(self) -> str:
        # pyftpdlib's debug() formats repr(self) whether or not the line is logged, several
        # times per data connection, and the full one walks the control channel's state.
        if _PYFTPDLIB_LOG.isEnabledFor(logging.DEBUG):
            return str(super().__repr__())
        session = getattr(getattr(self, "cmd_channel", None), "session_id", "")
        return f"<{type(self).__name__} session={session}>"

    def secure_connection(self, ssl_context: Any) -> None:
        super().secure_connection(ssl_context)
        if not isinstance(self.socket, SSL.Connection):
            return
        token = getattr(self.cmd_channel, "tls_session_token", None)
        if token is None:
            self.cmd_channel.respond(tls.REUSE_REQUIRED_REPLY)
            self.close()
            return
        exempt = bool(self.cmd_channel.user and self.cmd_channel.user.tls_reuse_exempt)
        tls.bind_session_context(self.socket, token, require_reuse=not exempt)

    def handle_failed_ssl_handshake(self) -> None:
        error = sys.exc_info()[1]
        refused = tls.is_reuse_refusal(error)
        log.info("data connection TLS handshake failed: %r", error)
        self._refuse_tls(tls.REUSE_REQUIRED_REPLY if refused else "522 SSL handshake failed.")

    def handle_ssl_established(self) -> None:
        user = self.cmd_channel.user
        if not tls.session_reused(self.socket) and not (user and user.tls_reuse_exempt):
            self._refuse_tls(tls.REUSE_REQUIRED_REPLY)

    def _refuse_tls(self, reply: str) -> None:
        """Refuse this data connection with one 522 reply and drop its transfer."""
        self._tls_refused = True
        self.cmd_channel.respond(reply)
        self.cmd_channel.audit_refusal("data-tls", reply)
        queued = self.file_obj or self.cmd_channel.take_queued_file()
        self.file_obj = None
        if isinstance(queued, UploadFile):
            upload = queued.upload
            self.cmd_channel.background(lambda: upload.abort("data connection TLS refused"))
        elif queued is not None:
            queued.close()
        self.close()

    def push_with_producer(self, producer: Any) -> None:
        """Send a binary download through FileSender; listings and ASCII as before."""
        if isinstance(producer, Producer) and self.cmd_channel._current_type == "i":
            self._sender = tls_stream.FileSender(producer.file)
            tls_stream.whole_writes(self.socket)
        super().push_with_producer(producer)

    def initiate_send(self) -> None:
        if self._ssl_accepting:
            return  # the handshake runs from the event handlers; data follows it
        sender = self._sender
        if sender is not None and self.producer_fifo and self.producer_fifo[0] is not None:
            # The download's producer stays first in asynchat's queue (so writable() and
            # handle_close() see the transfer as unfinished) until FileSender is done.
            if not sender.pump(self):
                return
            self._sender = None
            del self.producer_fifo[0]
        super().initiate_send()

    def send(self, data: bytes) -> int:
        # asynchat passes the empty listing of an empty folder (NLST) to send(); a
        # zero-byte SSL_write reads as "Unexpected EOF" and turned the 226 into a 426.
        if not data:
            return 0
        sent = int(super().send(data))
        if self.bandwidth is not None:
            self.bandwidth.sent(self, sent)
        return sent

    def handle_read(self) -> None:
        """Gather the records waiting (up to a block) and write them as one piece."""
        if self._stream_ended:
            self.handle_close()  # after a piece held for a quota claim was written
            return
        view = self._inbuf
        if view is None:
            view = self._inbuf = memoryview(bytearray(self._inbuf_size))
        if self.bandwidth is not None:
            view = view[:self.ac_in_buffer_size]
        try:
            count, self._stream_ended = tls_stream.gather(self, view)
        except OSError:
            self.handle_error()
            return
        if count == len(view) and self._inbuf_size < tls_stream.BLOCK:
            # More than a small file: the next reads gather into a full block (this
            # piece is written or copied before the next read).
            self._inbuf_size, self._inbuf = tls_stream.BLOCK, None
        if count:
            self.tot_bytes_received += count
            chunk: bytes | memoryview = view[:count]
            if self._data_wrapper is not None:
                chunk = self._data_wrapper(bytes(chunk))
            if not self._take(chunk):
                return
            if self.bandwidth is not None and self.bandwidth.received(self, count):
                return
        if self._stream_ended:
            self.handle_close()

    def _take(self, chunk: bytes | memoryview) -> bool:
        """Write a received piece; return False when reading stops (quota claim, refusal).

        A piece beyond the quota already claimed waits, with reading held, for a claim
        on the blocking pool: the database is never called on the loop.
        """
        handle: UploadFile = self.file_obj
        needed = handle.upload.shortfall(len(chunk))
        if needed:
            self._held = bytes(chunk)  # the block buffer is reused by the next read
            self.call_later(0, self._hold_reading)
            if handle.claiming is None:
                handle.claim(needed, self._after_claim)
            return False
        try:
            handle.write(chunk)
        except PortsideError as exc:
            self._refuse_upload(exc)
            return False
        if handle.claiming is None and handle.upload.running_low():
            handle.claim(0, self._after_claim)  # ahead of need, so reading rarely waits
        return not self._closed

    def _hold_reading(self) -> None:
        """Leave the loop while a piece waits for quota.

        Scheduled, not done in the read event: on its way out of an event pyftpdlib's TLS
        mixin may register the channel again (see throttle._pause).
        """
        if self._held is not None and not self._closed:
            self.del_channel()

    def _after_claim(self, needed: int, error: BaseException | None) -> None:
        """Go on with the held piece once a claim is back; refuse it when none is left."""
        if self._closed or self._held is None:
            return  # a claim ahead of need: a failure surfaces when the bytes arrive
        if isinstance(error, PortsideError) and needed:
            self._refuse_upload(error)
            return
        if error is not None and needed:
            log.error("quota claim failed", exc_info=error)
            self._refuse_upload(TemporarilyUnavailable("quota could not be checked"),
                                reply="451 Could not check the quota; try again.")
            return
        chunk, self._held = self._held, None
        if not self._take(chunk):
            return
        if self._bandwidth_timer is None:
            if self._fileno not in self.ioloop.socket_map:
                self.add_channel(events=self.ioloop.READ)
            # TLS may hold decrypted bytes the socket no longer signals: read them now.
            self.call_later(0, self.handle_read_event)

    def _refuse_upload(self, error: PortsideError, reply: str | None = None) -> None:
        """Stop an upload a service refused; the control handler removes its bytes."""
        self._refusal = error
        self._resp = (reply or replies.for_error(error), log.info)
        self.close()

    def handle_read_event(self) -> None:
        """Read data; TLS handshakes and shutdowns still go through pyftpdlib's mixin."""
        if not self._ssl_requested:
            self.handle_read()
            return
        if self._ssl_accepting or self._ssl_closing:
            super().handle_read_event()
            return
        with self._handle_ssl_want_rw():
            self._ssl_want_read = False
            self.handle_read()

    def close(self) -> None:
        """Close; an upload's final reply waits until the file is safely recorded."""
        if self._closed:
            return
        upload = self.file_obj if isinstance(self.file_obj, UploadFile) else None
        if upload is not None and self.receive and not self._upload_handed_over:
            # A TLS shutdown can keep the channel open past this first close(): hand the
            # upload over exactly once, or a second close would finish it twice.
            self._upload_handed_over = True
            completed = (self.transfer_finished and self._refusal is None
                         and self._ended_cleanly())
            refusal_reply = self._resp[0] if self._refusal is not None else None
            if self._refusal is None and self._resp and self._resp[0].startswith("421"):
                # A stalled transfer timed out and the session ends now: say so first.
                self.cmd_channel.respond(self._resp[0])
            self._resp = ()
            super().close()
            self.cmd_channel.upload_closed(upload, completed=completed,
                                           refusal=self._refusal, reply=refusal_reply)
            return
        super().close()

    def _ended_cleanly(self) -> bool:
        """Return False when a TLS upload ended without the client's close_notify.

        pyftpdlib treats any end of the stream (FIN or even RST) as the end of the file;
        over TLS only close_notify proves nothing was cut off (RFC 4217, section 10.2),
        so anything else keeps the upload as a resumable part instead of a whole file.
        """
        if not isinstance(self.socket, SSL.Connection):
            return True
        return bool(self.socket.get_shutdown() & SSL.RECEIVED_SHUTDOWN)
