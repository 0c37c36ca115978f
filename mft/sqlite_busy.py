"""A finer busy handler for the embedded SQLite database: a writer waiting for the write
lock retries every 0.1-2 ms instead of SQLite's built-in 1, 2, 5, 10, 15, 20, 25, 50 ms steps.

Web, gateway, workers and beat all write to one SQLite file, one writer at a time. With the
built-in handler (what `timeout=` installs) a waiter that misses the lock sleeps in growing
steps, and a busy writer beside it (the pipeline's worker) takes the lock again meanwhile:
with the pipeline running, a gateway's landing of a 4 KiB upload waited p95 83 ms for its
`226`, against 5 ms with the workers paused (docs/PERFORMANCE.md, "Small files").

Hand-written because Python's sqlite3 module has no busy-handler call (only the timeout):
`sqlite3_busy_handler()` is called through ctypes on the library the `_sqlite3` extension
itself uses (looked up through the extension, so never a second copy of SQLite), with the
connection's `sqlite3 *` read from the first field after the object header of CPython's
connection object (the layout of CPython 3.11-3.13; on any other Python nothing is done).
The pointer is checked before use: SQLite must name the same database file for it as the
connection says it has open; otherwise (an in-memory database, a build without the symbols)
nothing is installed and SQLite's own timeout stays in force.

The database backend `mft.sqlite` installs it on every connection it opens. The wait is
bounded like the built-in one: after the connection's timeout (30 s) the handler
gives up and the statement fails with "database is locked".
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from typing import Any

FIRST_DELAY = 0.0001  # s; doubled per retry up to MAX_DELAY
MAX_DELAY = 0.002
NEW_WAIT_GAP = 0.05  # s between two calls that count 0: a new statement's wait

# int (*)(void *arg, int count): return non-zero to retry, 0 to fail with SQLITE_BUSY.
_HANDLER_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int)


def delay(count: int) -> float:
    """Seconds to sleep before the retry after `count` failed ones."""
    return min(FIRST_DELAY * (1 << min(count, 16)), MAX_DELAY)


class _Wait(threading.local):
    """This thread's current wait for the lock (the handler runs on the waiting thread)."""

    started = 0.0
    last_call = 0.0
    last_count = -1


_wait_state = _Wait()


def _wait(arg: int | None, count: int) -> int:
    """The busy handler: retry after delay(count) until `arg` ms have passed.

    SQLite restarts `count` at 0 for each statement and may call twice with one count (WAL
    mode asks on two paths), so the time is measured, not the calls counted: a call with
    count 0 after a later count, or after a pause, starts a new wait.
    """
    state, now = _wait_state, time.monotonic()
    if count == 0 and (state.last_count != 0 or now - state.last_call > NEW_WAIT_GAP):
        state.started = now
    state.last_call, state.last_count = now, count
    if now - state.started >= (arg or 0) / 1000:
        return 0
    time.sleep(delay(count))
    return 1


# One callback object for the life of the process: SQLite keeps a pointer to it.
_HANDLER = _HANDLER_TYPE(_wait)


def _library() -> Any:
    # The connection object's layout (the `sqlite3 *` first) is CPython's, 3.11 to 3.13.
    if sys.implementation.name != "cpython" or not (3, 11) <= sys.version_info[:2] <= (3, 13):
        return None
    try:
        import _sqlite3

        lib = ctypes.CDLL(_sqlite3.__file__)  # dlsym searches its dependencies too
        install = lib.sqlite3_busy_handler
        filename = lib.sqlite3_db_filename
    except (ImportError, OSError, AttributeError):
        return None
    install.argtypes = [ctypes.c_void_p, _HANDLER_TYPE, ctypes.c_void_p]
    install.restype = ctypes.c_int
    filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    filename.restype = ctypes.c_char_p
    return lib


_lib = _library()


def _db_pointer(connection: Any) -> int | None:
    """Return the connection's `sqlite3 *`, or None where it cannot be confirmed."""
    if _lib is None:
        return None
    pointer = ctypes.c_void_p.from_address(id(connection) + object.__basicsize__).value
    if not pointer:
        return None
    rows = connection.execute("PRAGMA database_list").fetchall()
    opened = next((row[2] for row in rows if row[1] == "main"), None)
    named = _lib.sqlite3_db_filename(pointer, b"main")
    if not opened or named is None or named.decode(errors="replace") != opened:
        return None
    return pointer


def install(connection: Any, timeout: float) -> bool:
    """Give a sqlite3 connection the finer busy handler; return False if it kept its own."""
    pointer = _db_pointer(connection)
    if pointer is None:
        return False
    return _lib.sqlite3_busy_handler(pointer, _HANDLER, int(timeout * 1000)) == 0
