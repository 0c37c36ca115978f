"""Django's SQLite backend, with one write transaction per process at a time.

Every transaction on the embedded database is `BEGIN IMMEDIATE`: it holds SQLite's one
write lock until it commits. Threads of one process that want it at the same time (the
outbound worker's eight delivery threads, a gateway's landing and login threads) used to
wait inside SQLite, each polling the lock every 0.1-2 ms through the busy handler
(`mft.sqlite_busy`). Eight pollers in one process spent more CPU waking up, taking the GIL
and retrying than the deliveries themselves (docs/PERFORMANCE.md). Here a thread first
takes its process's gate for that database file, a plain lock, and only the gate's holder
waits for SQLite's lock: the others sleep until the gate is released, when the transaction
commits, rolls back or its connection closes. Nothing changes about who may write when;
SQLite allowed one of those threads at a time anyway.

Each connection it opens also gets `mft.sqlite_busy`'s finer busy handler in place of
SQLite's own, with the connection's timeout.

Hand-written because Django has no hook around a transaction's BEGIN and end other than its
backend's methods; this subclasses the stock backend and overrides only those, and the one
that opens a connection.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from typing import Any

from django.db.backends.sqlite3 import base

from mft import sqlite_busy

log = logging.getLogger(__name__)

_gates: dict[str, threading.Lock] = {}
_gates_lock = threading.Lock()


def gate(name: str) -> threading.Lock:
    """Return this process's write gate for the database file `name`."""
    with _gates_lock:
        return _gates.setdefault(str(name), threading.Lock())


def _forget_gates() -> None:
    """A forked child starts with fresh gates: a parent's holder is not in the child."""
    global _gates_lock
    _gates.clear()
    _gates_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_gates)


class DatabaseWrapper(base.DatabaseWrapper):
    """The stock SQLite wrapper; a transaction holds its process's gate (see above)."""

    _held_gate: threading.Lock | None = None

    def get_new_connection(self, conn_params: Any) -> Any:
        connection = super().get_new_connection(conn_params)
        if not sqlite_busy.install(connection, self._timeout()):
            log.debug("sqlite busy handler not installed; SQLite's own timeout applies")
        return connection

    def _start_transaction_under_autocommit(self) -> None:
        if self._held_gate is None and not self.is_in_memory_db():
            lock = gate(self.settings_dict["NAME"])
            if not lock.acquire(timeout=self._timeout()):
                # As SQLite says it after its own busy timeout: the caller sees no difference.
                with self.wrap_database_errors:
                    raise sqlite3.OperationalError("database is locked")
            self._held_gate = lock
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # not in the stubs
        except BaseException:
            self._release_gate()
            raise

    def _set_autocommit(self, autocommit: bool) -> None:
        try:
            super()._set_autocommit(autocommit)  # type: ignore[misc]  # not in the stubs
        finally:
            if autocommit:  # the transaction ended (committed or rolled back)
                self._release_gate()

    def _close(self) -> None:
        try:
            super()._close()  # type: ignore[misc]  # not in the stubs
        finally:
            self._release_gate()

    def _timeout(self) -> float:
        """The connection's busy timeout (seconds): for SQLite's lock and for the gate."""
        options: dict[str, Any] = self.settings_dict.get("OPTIONS", {})
        return float(options.get("timeout", 5))

    def _release_gate(self) -> None:
        lock, self._held_gate = self._held_gate, None
        if lock is not None:
            lock.release()
