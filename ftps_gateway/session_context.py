"""Run each session's loop callbacks under its correlation id, so its log lines carry it.

One loop thread serves many sessions, so the id is set around every event pyftpdlib
dispatches to a session's channels (control and data) and restored after; timers run in
the context they were scheduled from, and `BlockingPool` carries it into its threads and
back. Applied as the outermost class by `server.handler_class`, so it wraps every handler
method pyftpdlib calls, whichever class defines it.
"""

from __future__ import annotations

import contextvars
import time
from typing import Any

from pyftpdlib import ioloop
from pyftpdlib.ioloop import IOLoop, _read, _write

from mft import correlation


class SessionContext:
    """Mixin for a control or data channel: dispatch its events under the session's id."""

    session_id: str
    cmd_channel: Any

    def _session(self) -> str | None:
        own = getattr(self, "session_id", None)
        return own or getattr(getattr(self, "cmd_channel", None), "session_id", None)

    def log(self, *args: Any, **kwargs: Any) -> None:
        # pyftpdlib logs "session opened" from its __init__, before any event.
        with correlation.bound(self._session()):
            super().log(*args, **kwargs)  # type: ignore[misc]

    def handle(self) -> None:
        with correlation.bound(self._session()):
            super().handle()  # type: ignore[misc]

    def handle_read_event(self) -> None:
        with correlation.bound(self._session()):
            super().handle_read_event()  # type: ignore[misc]

    def handle_write_event(self) -> None:
        with correlation.bound(self._session()):
            super().handle_write_event()  # type: ignore[misc]

    def handle_close(self) -> None:
        with correlation.bound(self._session()):
            super().handle_close()  # type: ignore[misc]

    def handle_error(self) -> None:
        with correlation.bound(self._session()):
            super().handle_error()  # type: ignore[misc]


_EPOLL: Any = getattr(ioloop, "Epoll", ())  # Linux only


class SessionIOLoop(IOLoop):  # type: ignore[misc,valid-type]
    """pyftpdlib's loop whose timers run in the context they were scheduled from, and which
    serves every readable channel of a pass before any writable one, and again every
    `write_slice` seconds of writing."""

    # With a hundred downloads in one process, writing each its share takes tens of
    # milliseconds, and a command on an idle session would wait for all of it.
    write_slice = 0.01

    def poll(self, timeout: float | None) -> None:
        """Poll once: readable channels first, then writable ones.

        pyftpdlib serves each ready descriptor in the order epoll lists them, reading then
        writing. With a hundred downloads writable in every pass, a command on an idle
        session (a NOOP, a STOR) often waited for the rest of that pass and the next one;
        commands and uploads now wait at most for the reads listed before them, or for one
        slice of writes: after each, the loop looks again (without waiting) for channels
        that became readable and serves them before it writes the rest of the pass.
        """
        if not isinstance(self, _EPOLL):  # poll() and others take milliseconds: as before
            return super().poll(timeout)  # type: ignore[no-any-return]
        writable = self._serve_reads(-1 if timeout is None else timeout)
        channels = self.socket_map.get
        slice_ends = time.monotonic() + self.write_slice
        for index, (fd, channel) in enumerate(writable):
            # The same channel still (a read may have closed it, and an accept reused its fd).
            if channels(fd) is channel and channel.writable():
                _write(channel)
            if index + 1 < len(writable) and time.monotonic() >= slice_ends:
                self._serve_reads(0)  # what it finds writable is in this pass or the next
                slice_ends = time.monotonic() + self.write_slice
        return None

    def _serve_reads(self, timeout: float) -> list[tuple[int, Any]]:
        """Wait up to timeout for ready channels, serve the readable ones and close the
        failed ones; return the writable ones."""
        try:
            ready = self._poller.poll(timeout)
        except InterruptedError:
            return []
        channels = self.socket_map.get
        writable = []
        for fd, event in ready:
            channel = channels(fd)
            if channel is None:
                continue
            if event & self._ERROR and not event & self.READ:
                channel.handle_close()
                continue
            if event & self.READ and channel.readable():
                _read(channel)
            if event & self.WRITE:
                writable.append((fd, channel))
        return writable

    def call_later(self, seconds: float, target: Any, *args: Any, **kwargs: Any) -> Any:
        return super().call_later(seconds, contextvars.copy_context().run, target, *args,
                                  **kwargs)

    def call_every(self, seconds: float, target: Any, *args: Any, **kwargs: Any) -> Any:
        return super().call_every(seconds, contextvars.copy_context().run, target, *args,
                                  **kwargs)
