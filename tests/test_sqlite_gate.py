"""One write transaction per process at a time on the embedded database (mft.sqlite): the
threads of a process queue on its gate instead of polling SQLite's lock, a writer in another
process is still waited for, and every way a transaction ends opens the gate again."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import OperationalError

from mft.env import database_from_url
from mft.sqlite.base import DatabaseWrapper, gate


def _wrapper(path, timeout: float = 30) -> DatabaseWrapper:
    settings = database_from_url(f"sqlite:///{path}")
    settings["OPTIONS"] = {**settings["OPTIONS"], "timeout": timeout}  # type: ignore[dict-item]
    settings.update({"TIME_ZONE": None, "AUTOCOMMIT": True, "ATOMIC_REQUESTS": False,
                     "TEST": {}})
    return DatabaseWrapper(settings, alias="gate-test")


@contextmanager
def _transaction(wrapper: DatabaseWrapper) -> Iterator[DatabaseWrapper]:
    """Begin, commit or roll back, and end the transaction as transaction.atomic does."""
    wrapper.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
    try:
        yield wrapper
    except BaseException:
        wrapper.rollback()
        raise
    else:
        wrapper.commit()
    finally:
        if wrapper.connection is not None:
            wrapper.set_autocommit(True)


@pytest.fixture
def db_path(tmp_path, django_db_blocker):
    path = tmp_path / "db.sqlite3"
    with django_db_blocker.unblock():
        setup = _wrapper(path)
        with setup.cursor() as cursor:
            cursor.execute("CREATE TABLE t (x)")
        setup.close()
        yield path


def _rows(path) -> list[int]:
    with sqlite3.connect(path) as con:
        return [row[0] for row in con.execute("SELECT x FROM t ORDER BY rowid")]


def test_a_transaction_holds_its_process_gate_until_it_commits_or_rolls_back(db_path):
    wrapper = _wrapper(db_path)
    try:
        with _transaction(wrapper) as w, w.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (1)")
            assert gate(str(db_path)).locked()
        assert not gate(str(db_path)).locked()
        with pytest.raises(RuntimeError), _transaction(wrapper) as w:
            assert gate(str(db_path)).locked()
            raise RuntimeError("rolled back")
        assert not gate(str(db_path)).locked()
        assert _rows(db_path) == [1]
    finally:
        wrapper.close()


def test_threads_of_one_process_wait_on_the_gate_without_polling_sqlite(
        db_path, counted_delays):
    holder_in, waiter_done = threading.Event(), threading.Event()
    release = threading.Event()

    def hold() -> None:
        wrapper = _wrapper(db_path)
        with _transaction(wrapper) as w, w.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (1)")
            holder_in.set()
            release.wait(10)
        wrapper.close()

    def wait_to_write() -> None:
        wrapper = _wrapper(db_path)
        with _transaction(wrapper) as w, w.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (2)")
        wrapper.close()
        waiter_done.set()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holder_in.wait(10)
    waiters = [threading.Thread(target=wait_to_write) for _ in range(3)]
    for thread in waiters:
        thread.start()
    time.sleep(0.3)  # SQLite's handler would have retried dozens of times by now
    assert not waiter_done.is_set()
    release.set()
    for thread in [holder, *waiters]:
        thread.join(10)
    assert _rows(db_path) == [1, 2, 2, 2]
    assert counted_delays == [], "a thread polled SQLite's lock behind its own process"


def test_a_writer_in_another_process_is_still_waited_for_through_sqlite(
        db_path, counted_delays, django_db_blocker):
    other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # as another process would: not behind our gate
    threading.Timer(0.1, lambda: other.execute("COMMIT")).start()
    wrapper = _wrapper(db_path)
    try:
        with django_db_blocker.unblock(), _transaction(wrapper) as w, w.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (3)")
        assert counted_delays, "the gate's holder did not wait for SQLite's lock"
        assert _rows(db_path) == [3]
    finally:
        wrapper.close()
        other.close()


def test_the_gate_gives_up_with_database_is_locked_after_the_connections_timeout(db_path):
    lock = gate(str(db_path))
    assert lock.acquire(timeout=1)
    wrapper = _wrapper(db_path, timeout=0.2)
    try:
        t0 = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"), \
                _transaction(wrapper):
            pass
        assert 0.2 <= time.monotonic() - t0 < 10
    finally:
        lock.release()
    with _transaction(wrapper) as w, w.cursor() as cursor:  # no lasting harm
        cursor.execute("INSERT INTO t VALUES (4)")
    wrapper.close()
    assert _rows(db_path) == [4] and not lock.locked()


def test_a_connection_closed_inside_its_transaction_opens_the_gate(db_path):
    wrapper = _wrapper(db_path)
    wrapper.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
    assert gate(str(db_path)).locked()
    wrapper.close()
    assert not gate(str(db_path)).locked()
    assert _rows(db_path) == []


def test_a_forked_child_does_not_inherit_a_held_gate(db_path):
    wrapper = _wrapper(db_path)
    wrapper.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
    try:
        pid = os.fork()
        if pid == 0:  # the child: its own gate is free (SQLite's lock is the parent's)
            os._exit(0 if gate(str(db_path)).acquire(timeout=1) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        wrapper.rollback()
        wrapper.set_autocommit(True)
        wrapper.close()
