"""SQLite writers waiting for the write lock retry on our fine-grained schedule, bounded by
the connection's timeout; Django's SQLite connections get the handler when they open."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from mft import sqlite_busy
from mft.env import database_from_url
from mft.sqlite.base import DatabaseWrapper

pytestmark = pytest.mark.skipif(sqlite_busy._lib is None,
                                reason="not CPython 3.11-3.13 with sqlite3 symbols")


def _open(path, timeout: float) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                          check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    return con


def test_schedule_starts_fine_and_is_capped():
    delays = [sqlite_busy.delay(n) for n in range(8)]
    assert delays[0] == sqlite_busy.FIRST_DELAY
    assert delays == sorted(delays)
    assert max(delays) == sqlite_busy.MAX_DELAY
    assert sqlite_busy.delay(10_000) == sqlite_busy.MAX_DELAY


def test_a_waiting_writer_retries_through_our_handler_until_the_lock_is_free(
        tmp_path, counted_delays):
    path = tmp_path / "db.sqlite3"
    holder, waiter = _open(path, 30), _open(path, 30)
    holder.execute("CREATE TABLE t (x)")
    assert sqlite_busy.install(waiter, 30)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(0.1, lambda: holder.execute("COMMIT"))
    release.start()
    waiter.execute("BEGIN IMMEDIATE")  # blocks until the holder commits
    waiter.execute("INSERT INTO t VALUES (2)")
    waiter.execute("COMMIT")
    release.join()
    assert counted_delays and counted_delays == sorted(counted_delays)
    assert max(counted_delays) >= 2
    assert [r[0] for r in holder.execute("SELECT x FROM t ORDER BY x")] == [1, 2]


def test_a_writer_gives_up_with_database_is_locked_after_its_timeout(tmp_path, counted_delays):
    path = tmp_path / "db.sqlite3"
    holder, waiter = _open(path, 30), _open(path, 0.2)
    holder.execute("CREATE TABLE t (x)")
    assert sqlite_busy.install(waiter, 0.2)
    holder.execute("BEGIN IMMEDIATE")
    for _ in range(2):  # and again: the second wait is measured from its own start
        t0 = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            waiter.execute("BEGIN IMMEDIATE")
        assert 0.2 <= time.monotonic() - t0 < 10  # waited its timeout, and no longer
    assert counted_delays
    holder.execute("ROLLBACK")
    waiter.execute("BEGIN IMMEDIATE")  # the lock is free again: no lasting harm
    waiter.execute("ROLLBACK")


def test_an_in_memory_database_keeps_sqlites_own_handler():
    con = sqlite3.connect(":memory:")
    assert sqlite_busy.install(con, 1) is False


def test_djangos_sqlite_connections_get_the_handler_when_they_open(
        tmp_path, counted_delays, django_db_blocker):
    settings = database_from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    settings.update({"TIME_ZONE": None, "AUTOCOMMIT": True, "ATOMIC_REQUESTS": False,
                     "TEST": {}})
    wrapper = DatabaseWrapper(settings, alias="busy-test")
    holder = _open(tmp_path / "db.sqlite3", 30)
    try:
        with django_db_blocker.unblock():
            wrapper.ensure_connection()  # opens the connection
            holder.execute("BEGIN IMMEDIATE")
            threading.Timer(0.05, lambda: holder.execute("COMMIT")).start()
            with wrapper.cursor() as cursor:
                cursor.execute("CREATE TABLE u (x)")  # waits for the holder's write lock
        assert counted_delays, "Django's connection waited without our handler"
    finally:
        wrapper.close()
        holder.close()
