"""Publish this gateway process's sessions and act on disconnect requests, off the loop.

The loop only takes snapshots (a few attribute reads per session) every half second; what
changed goes to transfers.sessions.publish() as one job on the blocking pool. A login, a
transfer starting or ending, or a session ending is published at the next check; progress
and command times every PUBLISH_SECONDS. At most one job is in flight, so a slow database
delays publishing and never piles jobs up.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ftps_gateway.transfer_files import DownloadFile, UploadFile
from transfers import sessions
from transfers.sessions import DisconnectRequest, SessionState, TransferState

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.5
PUBLISH_SECONDS = 2.0
# Every so often every session is written again (rows lost to a purge or a failed job come
# back) and dead processes' rows are purged.
REFRESH_SECONDS = 30.0
DISCONNECT_REPLY = "421 Disconnected by an administrator."


def _transfer(handler: Any, wall_offset: float) -> TransferState | None:
    """Return the transfer running on a session's data connection, if any."""
    channel = handler.data_channel
    handle = getattr(channel, "file_obj", None)
    started = datetime.fromtimestamp(getattr(channel, "_start_time", 0.0) + wall_offset, UTC)
    if isinstance(handle, UploadFile):
        return TransferState("upload", handle.upload.virtual, channel.tot_bytes_received,
                             None, started)
    if isinstance(handle, DownloadFile):
        # The path the client asked for, kept on the handle: resolving the real path here
        # (realpath per transferring session per tick) took 9-16 % of a loop serving 100
        # downloads.
        path = handle.virtual or handle.download.stored.path
        return TransferState("download", path, channel.tot_bytes_sent,
                             max(0, handle.download.size - handle.offset), started)
    return None


def snapshot(handler: Any, wall_offset: float) -> SessionState:
    """Return a logged-in session's state (on the loop: attribute reads only)."""
    user = handler.user
    details = getattr(handler, "tls_details", {})
    last = getattr(handler, "last_command_at", None)
    port = handler.remote_port
    return SessionState(
        session_id=handler.session_id, user_id=user.pk, username=user.get_username(),
        partner_id=user.partner_id, remote_address=handler.remote_ip or None,
        remote_port=int(port) if port else None, implicit=bool(handler.implicit),
        tls_version=details.get("tls_version") or "", tls_cipher=details.get("cipher") or "",
        started_at=datetime.fromtimestamp(handler.started, UTC),
        last_command_at=datetime.fromtimestamp(last, UTC) if last else None,
        transfer=_transfer(handler, wall_offset))


def _shape(state: SessionState) -> tuple[Any, ...]:
    """Return what makes a change worth publishing at once: who, and which transfer."""
    transfer = state.transfer
    return (state.user_id, transfer and (transfer.direction, transfer.path,
                                         transfer.started_at))


class SessionPublisher:
    """Keep this process's session rows current; close sessions an admin asked to end."""

    def __init__(self, pool: Any, handlers: Callable[[], list[Any]], gateway_name: str) -> None:
        self.pool = pool
        self.handlers = handlers
        self.gateway = sessions.GatewayIdentity(gateway_name, socket.gethostname(),
                                                os.getpid())
        # Data channels record monotonic start times; converted with one offset, a
        # transfer's start time stays the same from one snapshot to the next.
        self._wall_offset = time.time() - time.monotonic()
        self._published: dict[str, SessionState] = {}
        self._disconnecting: set[str] = set()
        self._in_flight = False
        self._next_publish = 0.0
        self._next_refresh = time.monotonic() + REFRESH_SECONDS
        self._timer: Any = None
        self.jobs = 0  # publish jobs started: lets tests and benchmarks count them

    def start(self, ioloop: Any) -> None:
        """Forget rows left by an earlier process of the same name, then check periodically."""
        self._in_flight = True
        self.pool.submit(lambda: sessions.forget_gateway(self.gateway.name), self._done_forget)
        self._timer = ioloop.call_every(CHECK_SECONDS, self.tick, _errback=self._tick_failed)

    def _done_forget(self, _result: Any, error: BaseException | None) -> None:
        self._in_flight = False
        if error is not None:
            log.error("could not clear this gateway's old session rows", exc_info=error)

    def _tick_failed(self) -> None:
        log.exception("session publishing tick failed")

    def tick(self) -> None:
        """Snapshot the sessions; start a publish job when something is due."""
        if self._in_flight:
            return
        now = time.monotonic()
        live = {h.session_id: h for h in self.handlers()
                if getattr(h, "user", None) is not None and not h._closed}
        states = {sid: snapshot(h, self._wall_offset) for sid, h in live.items()}
        ended = [sid for sid in self._published if sid not in states]
        refresh = now >= self._next_refresh
        changed = [s for sid, s in states.items()
                   if refresh or self._published.get(sid) != s]
        urgent = bool(ended) or any(
            sid not in self._published or _shape(self._published[sid]) != _shape(s)
            for sid, s in states.items())
        if not (urgent or refresh or now >= self._next_publish):
            return
        self._next_publish = now + PUBLISH_SECONDS
        if refresh:
            self._next_refresh = now + REFRESH_SECONDS
        self._send(changed, ended, purge=refresh, handlers=live)

    def _send(self, changed: list[SessionState], ended: list[str], *, purge: bool,
              handlers: dict[str, Any]) -> None:
        """Run one publish job; on success remember what was written and act on requests."""
        gateway = self.gateway
        self._in_flight = True
        self.jobs += 1

        def work() -> list[DisconnectRequest]:
            return sessions.publish(gateway, changed, ended, purge=purge)

        def done(requests: list[DisconnectRequest] | None, error: BaseException | None) -> None:
            self._in_flight = False
            if error is not None:
                log.error("could not publish gateway sessions", exc_info=error)
                return
            for sid in ended:
                self._published.pop(sid, None)
                self._disconnecting.discard(sid)
            self._published.update({s.session_id: s for s in changed})
            for request in requests or []:
                self._disconnect(handlers.get(request.session_id), request)

        self.pool.submit(work, done)

    def _disconnect(self, handler: Any, request: DisconnectRequest) -> None:
        """End a session with 421 and record who asked for it (once)."""
        if handler is None or handler._closed or request.session_id in self._disconnecting:
            return
        self._disconnecting.add(request.session_id)
        origin = handler.origin()
        handler.respond(DISCONNECT_REPLY)
        handler.close_when_done()
        self.pool.submit(lambda: sessions.record_disconnected(request, session_origin=origin))

    def close(self) -> None:
        """Stop checking and delete this process's rows (runs on the pool before it closes)."""
        if self._timer is not None:
            self._timer.cancel()
        name = self.gateway.name
        self.pool.submit(lambda: sessions.forget_gateway(name))

