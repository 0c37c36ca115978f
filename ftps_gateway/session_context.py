"""Run each session's loop callbacks under its correlation id, so its log lines carry it.

One loop thread serves many sessions, so the id is set around every event pyftpdlib
dispatches to a session's channels (control and data) and restored after; timers run in
the context they were scheduled from, and `BlockingPool` carries it into its threads and
back. Applied as the outermost class by `server.handler_class`, so it wraps every handler
method pyftpdlib calls, whichever class defines it.
"""

from __future__ import annotations

import contextvars
from typing import Any

from pyftpdlib.ioloop import IOLoop

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


class SessionIOLoop(IOLoop):  # type: ignore[misc,valid-type]
    """pyftpdlib's loop whose timers run in the context they were scheduled from."""

    def call_later(self, seconds: float, target: Any, *args: Any, **kwargs: Any) -> Any:
        return super().call_later(seconds, contextvars.copy_context().run, target, *args,
                                  **kwargs)

    def call_every(self, seconds: float, target: Any, *args: Any, **kwargs: Any) -> Any:
        return super().call_every(seconds, contextvars.copy_context().run, target, *args,
                                  **kwargs)
