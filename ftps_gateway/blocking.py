"""Run blocking work (password hashing, database, audit) off the event loop.

pyftpdlib's IOLoop has no thread-safe wakeup, so this adds one: a socketpair whose read
end the loop watches. A worker thread finishes a job, queues its callback and writes one
byte; the loop wakes, drains the byte and runs the callback on the loop thread. Nothing a
thread does ever touches a channel directly.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import close_old_connections, connections
from pyftpdlib.ioloop import AsyncChat

log = logging.getLogger(__name__)
T = TypeVar("T")


class _WakeupChannel(AsyncChat):
    """The loop side of the socketpair: runs queued callbacks when woken."""

    def __init__(self, sock: socket.socket, ioloop: Any, owner: BlockingPool) -> None:
        self._owner = owner
        super().__init__(sock, ioloop=ioloop)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        try:
            self.socket.recv(4096)
        except (BlockingIOError, InterruptedError):
            pass
        self._owner.run_ready()

    def handle_read_event(self) -> None:
        self.handle_read()

    def handle_error(self) -> None:
        log.exception("error in a gateway callback")


class BlockingPool:
    """A thread pool whose results come back as callbacks on the loop thread."""

    def __init__(self, ioloop: Any, threads: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gw-block")
        self._ready: collections.deque[Callable[[], None]] = collections.deque()
        self._lock = threading.Lock()
        reader, self._writer = socket.socketpair()
        reader.setblocking(False)
        self._writer.setblocking(False)
        self._channel = _WakeupChannel(reader, ioloop, self)
        self.pending = 0

    def submit(self, work: Callable[[], T], done: Callable[[T | None, BaseException | None],
                                                        None] | None = None) -> None:
        """Run work in a thread; then call done(result, error) on the loop thread."""
        self.pending += 1
        # The caller's context (its session's correlation id) goes to the thread and back.
        context = contextvars.copy_context()

        def job() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = context.run(work)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop callback
                error = exc
            finally:
                close_old_connections()
            self._post(lambda: context.run(self._complete, done, result, error))

        self._executor.submit(job)

    def _complete(self, done: Callable[..., None] | None, result: Any,
                  error: BaseException | None) -> None:
        self.pending -= 1
        if done is not None:
            done(result, error)
        elif error is not None:
            log.error("background gateway job failed", exc_info=error)

    def _post(self, callback: Callable[[], None]) -> None:
        """Queue a callback for the loop thread and wake the loop."""
        with self._lock:
            self._ready.append(callback)
        try:
            self._writer.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the pipe is full of wakeups already; the loop will drain the queue
        except OSError:
            pass  # closing down

    def run_ready(self) -> None:
        """Run every queued callback (on the loop thread)."""
        while True:
            with self._lock:
                if not self._ready:
                    return
                callback = self._ready.popleft()
            try:
                callback()
            except Exception:
                log.exception("error in a gateway callback")

    def close(self) -> None:
        """Wait for running jobs, close every thread's database connection and the pair."""
        threads = self._executor._max_workers
        barrier = threading.Barrier(threads, timeout=10)

        def close_connection() -> None:
            # The barrier makes each thread take exactly one of these jobs.
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
            connections.close_all()

        for _ in range(threads):
            self._executor.submit(close_connection)
        self._executor.shutdown(wait=True)
        self.run_ready()
        self._channel.close()
        self._writer.close()
