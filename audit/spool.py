"""A durable local spool in front of the audit chain: append now, write to the database later.

An event loop must never wait on the database, and a security event must survive the process
being killed. So the loop appends each event as one JSON line to a per-process file with a
single os.write on an O_APPEND descriptor (the kernel's page cache keeps it through SIGKILL
or OOM), and one thread per process writes the lines to the chain in batches, one transaction
each, then records how far it got in an offset file beside the spool file.

Hand-written because no library does a crash-safe local spool in front of our hash chain:
a broker is a second server that can be down too, and logging handlers either lose lines on
SIGKILL or cannot tell a line already written from one still owed. The one gap, a crash
between a batch's commit and its offset update, is closed by checking each batch's spool
ids against the events already in the chain before writing it.

Ownership is an flock on the spool file: held by its process while it lives, released by the
kernel when it dies, so whoever takes the lock may drain and remove a dead process's file.

A long-lived process rolls its file over. After a drain that reached the database, when the
file is past AUDIT_SPOOL_ROLL_BYTES, the drainer points appends at a fresh file (created,
locked and its name synced first) under the lock every append holds for its write, so each
line is in exactly one file. The old file, still locked, is "retired": the drainer writes
the lines that came during its last drain to the chain, then removes it. Only one file is
retired at a time and a retired file is never removed before it is drained: with the
database down it stays (locked while the process lives, replayed after), and no roll-over
happens. A process killed anywhere in this leaves ordinary spool files for replay.

A successful FTPS login is spooled too (`record_login`), but durably: the line is flushed to
the disk with fdatasync before the client gets its reply, as a database commit would be, so
the event survives a crash of the machine as well as of the process. Refused logins are
still written to the chain before their reply.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from audit import chain, events
from audit.events import Origin
from audit.models import AuditEvent

log = logging.getLogger(__name__)

BATCH = 200  # lines per transaction
LINGER = 0.25  # seconds the drainer waits after a wake-up, so one transaction takes a burst
BACKOFF_MAX = 30.0  # seconds between attempts while the database is down
LOG_AFTER = 300.0  # seconds an event may wait before it is also written to the log
ADOPT_EVERY = 60.0  # seconds between looks for files left by dead processes
SUFFIX = ".jsonl"


_ORIGIN_FIELDS = dataclasses.fields(Origin)


def _login_event(*, origin: Origin, at: datetime, action: str, outcome: str, user_id: int,
                 username: str, method: str,
                 details: dict[str, Any] | None = None) -> AuditEvent:
    """Write a spooled successful login, naming the user as it was (it may be gone now).

    action and outcome are on every spool line for its readers; here always login, success.
    """
    user = get_user_model()(pk=user_id, username=username)
    return events.login_succeeded(origin=origin, user=user, method=method, at=at,
                                  details=details)


# The event writers a spool line may name: each takes origin, at and details.
WRITERS: dict[str, Callable[..., Any]] = {"session": events.session_event,
                                          "login": _login_event}


def directory() -> Path:
    """Return the folder spool files live in."""
    return Path(settings.DATA_DIR) / "spool" / "audit"


def _offset_path(path: Path) -> Path:
    return path.with_suffix(".offset")


_OFFSET_WIDTH = 20  # digits, so every update overwrites the same bytes in place


def _read_offset(path: Path) -> int:
    """Return how many bytes of a spool file are committed to the chain."""
    try:
        return int(_offset_path(path).read_bytes().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0  # missing or torn: the lines are re-checked against the chain, not doubled


def _write_offset(path: Path, offset: int) -> None:
    """Record progress: one small pwrite in place (no temporary file and rename per batch;
    a lost or torn update only means a re-check, never a duplicate)."""
    fd = os.open(_offset_path(path), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, str(offset).zfill(_OFFSET_WIDTH).encode(), 0)
    finally:
        os.close(fd)


def _sync_directory(folder: Path) -> None:
    """Flush a folder's entries (a new spool file's name) to the disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Remove a spool file and its offset file; the spool file first, so the pair never
    reads as a new file from offset 0."""
    for name in (path, _offset_path(path)):
        try:
            name.unlink()
        except FileNotFoundError:
            pass


class AuditSpool:
    """This process's spool file: appended to on the loop thread, drained by one thread,
    rolled over by that thread when large."""

    def __init__(self, folder: Path | None = None, *, roll_bytes: int | None = None) -> None:
        self.folder = folder or directory()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.roll_bytes = roll_bytes or settings.AUDIT_SPOOL_ROLL_BYTES
        # Held for one write or the switch of a roll-over: never across the database or an
        # fsync, so appends on the loop wait microseconds at most.
        self._lock = threading.Lock()
        self.path, self._fd = self._create()
        # The file appends left at the last roll-over, until its rest is in the chain.
        self.retired: Path | None = None
        self._retired_fd = -1
        self.wake = threading.Event()
        self.closed = False

    def _create(self) -> tuple[Path, int]:
        """Create and lock a new spool file, its name synced to the disk; return it."""
        while True:
            path = self.folder / f"{os.getpid()}-{time.time_ns()}{SUFFIX}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
                         | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # a replay took it, empty and not yet locked, for a dead process's
            else:
                if os.fstat(fd).st_nlink:  # else that replay removed it already
                    break
            os.close(fd)
        try:
            _sync_directory(self.folder)  # the new file's name must outlive a crash too
        except OSError:
            _remove(path)
            os.close(fd)
            raise
        return path, fd

    def append(self, kind: str, *, origin: Origin, durable: bool = False,
               **fields: Any) -> str:
        """Append one event (never blocks on the database); return its spool id.

        With durable, the line is on the disk when this returns (fdatasync): for security
        events a client is told about, called off the event loop.
        """
        # A shallow copy of the origin's fields: dumped at once, so asdict's deep copy
        # (a third of an append's time) buys nothing.
        record = {"id": uuid.uuid4().hex, "at": timezone.now().isoformat(), "kind": kind,
                  "origin": {f.name: getattr(origin, f.name) for f in _ORIGIN_FIELDS},
                  "fields": fields}
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        data = line.encode()
        with self._lock:
            if self.closed:  # its descriptor number may already belong to another file
                raise ValueError("the audit spool is closed")
            if os.write(self._fd, data) != len(data):  # disk full: end the torn line
                os.write(self._fd, b"\n")
                raise OSError(f"audit spool {self.path.name}: short write")
            # Synced through a descriptor of our own: a roll-over may close this one
            # meanwhile, and its number may then name another file.
            sync_fd = os.dup(self._fd) if durable else None
        if sync_fd is not None:
            try:
                os.fdatasync(sync_fd)
            finally:
                os.close(sync_fd)
        self.wake.set()
        return str(record["id"])

    def record_login(self, *, origin: Origin, user: Any, method: str) -> str:
        """Append a successful login durably (before its reply); return its spool id."""
        return self.append("login", origin=origin.as_user(user), durable=True,
                           action="login", outcome=events.SUCCESS, user_id=user.pk,
                           username=user.get_username(), method=method)

    def drained(self) -> bool:
        """Return True when every appended line is in the chain."""
        with self._lock:
            return self.retired is None and self._drained()

    def _drained(self) -> bool:
        return _read_offset(self.path) >= os.fstat(self._fd).st_size

    def roll(self) -> bool:
        """Move appends to a fresh file if the current one is past the roll-over size and
        none is retired; the old one becomes `retired`. Return True when it rolled over.

        Called by the drainer thread after a successful drain; touches no database.
        """
        with self._lock:
            if (self.closed or self.retired is not None
                    or os.fstat(self._fd).st_size < self.roll_bytes):
                return False
        new_path, new_fd = self._create()  # outside the lock: it syncs the folder
        with self._lock:
            old_path, rolled = self.path, not self.closed
            if rolled:
                self.retired, self._retired_fd = self.path, self._fd
                self.path, self._fd = new_path, new_fd
        if not rolled:
            _remove(new_path)
            os.close(new_fd)
            return False
        log.info("audit spool %s rolled over to %s", old_path.name, new_path.name)
        return True

    def finish_roll(self) -> int:
        """Write the rest of the retired file to the chain, then remove it; return how many
        events were written.

        Raises the database's error: the file then stays, locked, for the next try.
        """
        with self._lock:
            path, fd = self.retired, self._retired_fd
        if path is None:
            return 0
        written = drain(path, final=True)  # no line is added to it any more
        with self._lock:
            mine = self.retired == path  # else close() took it
            if mine:
                self.retired = None
        if mine:
            _remove(path)  # still locked: no replay adopts it meanwhile (st_nlink)
            os.close(fd)
        return written

    def close(self) -> None:
        """Release the files; remove those whose every line is in the chain (else replay
        will)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True  # no append after this, so drained() is final
            files = [(self.path, self._fd)]
            if self.retired is not None:
                files.insert(0, (self.retired, self._retired_fd))
                self.retired = None
        for path, fd in files:
            if _read_offset(path) >= os.fstat(fd).st_size:
                _remove(path)
            os.close(fd)


# --- draining ------------------------------------------------------------------------------

def _batches(path: Path, offset: int, *, final: bool) -> Iterator[tuple[list[bytes], int]]:
    """Yield batches of complete lines after offset, each with the offset after it.

    A last line without its newline is still being written, unless the file is final (its
    process is dead): then it is torn, and skipped.
    """
    with open(path, "rb") as spool_file:
        spool_file.seek(offset)
        more = True
        while more:
            lines: list[bytes] = []
            start = offset
            while len(lines) < BATCH:
                line = spool_file.readline()
                if not line.endswith(b"\n"):
                    more = False
                    if line and final:
                        log.error("audit spool %s: torn last line skipped: %r", path, line)
                        offset += len(line)
                    break
                lines.append(line)
                offset += len(line)
            if offset != start:
                yield lines, offset


def _parse(path: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    """Return the readable records of a batch; an unreadable line is logged, not retried."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
            record["at"] = datetime.fromisoformat(record["at"])
            if record["kind"] not in WRITERS:
                raise ValueError(f"unknown event kind {record['kind']!r}")
        except (ValueError, KeyError, TypeError) as exc:
            log.error("audit spool %s: unreadable line skipped (%s): %r", path, exc, line)
            continue
        records.append(record)
    return records


def _already_written(records: list[dict[str, Any]]) -> set[str]:
    """Return the spool ids of a batch that are already in the chain (a crash came between
    its commit and its offset update)."""
    if not records:
        return set()
    times = [record["at"] for record in records]
    return set(AuditEvent.objects.filter(
        created_at__gte=min(times), created_at__lte=max(times),
        details__spool_id__in=[record["id"] for record in records],
    ).values_list("details__spool_id", flat=True))


def _write_batch(records: list[dict[str, Any]], *, offset_current: bool = False) -> int:
    """Write a batch to the chain in one transaction and one chain append (one lock, head
    read and head update for the batch), skipping what is already there (not looked for
    when the offset is current, see drain); return how many events were written."""
    if not records:
        return 0
    with transaction.atomic(), chain.appended_together():
        done = set() if offset_current else _already_written(records)
        for record in records:
            if record["id"] in done:
                continue
            fields = dict(record["fields"])
            fields["details"] = {**(fields.get("details") or {}), "spool_id": record["id"]}
            WRITERS[record["kind"]](origin=Origin(**record["origin"]), at=record["at"],
                                    **fields)
    return len(records) - len(done)


def drain(path: Path, *, final: bool = False, offset_current: bool = False) -> int:
    """Write every complete line after the committed offset to the chain; return how many
    events were written (lines already in the chain are skipped).

    With `offset_current` the caller vouches that the offset was written after the last
    batch committed (its own previous drain of this file succeeded): then no line after it
    can be in the chain, and the lookup for them, half of a small batch's cost, is skipped.

    Raises the database's error when a batch cannot be written: its lines stay in the file.
    """
    written = 0
    offset = _read_offset(path)
    for lines, end in _batches(path, offset, final=final):
        written += _write_batch(_parse(path, lines), offset_current=offset_current)
        _write_offset(path, end)
    return written


def replay(folder: Path | None = None) -> int:
    """Drain and remove the spool files of processes no longer running; return lines written.

    A file whose lock is held belongs to a live process (or another replay) and is skipped.
    """
    folder = folder or directory()
    written = 0
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            if os.fstat(fd).st_nlink == 0:
                continue  # drained and removed by whoever held the lock before us
            written += drain(path, final=True)
            _remove(path)
            log.info("audit spool %s replayed", path.name)
        finally:
            os.close(fd)
    _remove_stray_offsets(folder)
    return written


def _remove_stray_offsets(folder: Path) -> None:
    """Remove offset files whose spool file is gone (a process died between the two
    unlinks of _remove); an offset file is only ever written after its spool file exists."""
    for offset_path in folder.glob("*.offset"):
        if not offset_path.with_suffix(SUFFIX).exists():
            offset_path.unlink(missing_ok=True)


def replay_or_log(folder: Path | None = None) -> None:
    """Replay left-over spool files at start-up; on failure leave them for a drainer."""
    try:
        count = replay(folder)
    except Exception:
        log.exception("audit spool replay failed; a gateway worker will retry it")
        connection.close()
        return
    if count:
        log.warning("audit spool: %d event(s) left by a stopped process written to the chain",
                    count)


def backlog(folder: Path | None = None) -> dict[str, Any]:
    """Return how many spool files there are, their unwritten bytes and the oldest
    unwritten event's age in seconds."""
    folder = folder or directory()
    files, pending, oldest = 0, 0, None
    for path in folder.glob(f"*{SUFFIX}") if folder.is_dir() else ():
        try:
            size, offset = path.stat().st_size, _read_offset(path)
            with open(path, "rb") as spool_file:
                spool_file.seek(offset)
                first = spool_file.readline()
        except FileNotFoundError:
            continue
        files += 1
        pending += max(0, size - offset)
        if first.endswith(b"\n"):
            at = datetime.fromisoformat(json.loads(first)["at"])
            oldest = min(oldest or at, at)
    age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
    return {"files": files, "pending_bytes": pending, "oldest_pending_seconds": round(age, 1)}


# --- the drainer thread --------------------------------------------------------------------

class Drainer:
    """One thread per process that writes its spool to the chain, and adopts dead files."""

    def __init__(self, spool: AuditSpool) -> None:
        self.spool = spool
        self._stop = threading.Event()
        self._failing_since: float | None = None
        self._logged: dict[Path, int] = {}  # how far each file's lines were logged
        self._next_adopt = time.monotonic() + ADOPT_EVERY
        self._next_roll = 0.0
        self._deadline = float("inf")
        # The file whose offset this thread knows to be current (drain's offset_current):
        # the one it drained last without an error, and at first the spool's new file, of
        # which no line can be in the chain yet. After an error its lines are looked up.
        self._drained_cleanly: Path | None = spool.path
        self._thread = threading.Thread(target=self._run, name="audit-spool", daemon=True)

    def start(self) -> None:
        """Start draining in the background."""
        self._thread.start()

    def close(self, timeout: float) -> None:
        """Write what is left (trying for up to timeout), stop the thread, release the spool."""
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self.spool.wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout + 1)
        if not self.spool.drained():
            log.error("audit spool %s not drained in %.0fs; it is replayed at the next start",
                      self.spool.path.name, timeout)
        self.spool.close()

    def _run(self) -> None:
        delay = 0.0
        try:
            while True:
                stopping = self._stop.is_set()
                self.spool.wake.clear()
                if self._attempt():
                    delay = 0.0
                    if stopping:
                        return
                    self._roll()
                    self._adopt_orphans()
                    if self.spool.wake.wait(1.0):
                        self._stop.wait(LINGER)
                    continue
                if stopping and time.monotonic() >= self._deadline:
                    return
                delay = min(BACKOFF_MAX, max(0.5, delay * 2))
                # Once stopping, retry often enough to use the time left.
                if stopping:
                    time.sleep(min(delay, 1.0))
                else:
                    self._stop.wait(delay)
        finally:
            connection.close()

    def _attempt(self) -> bool:
        """Drain the spool once; return False (and note it) when the database failed."""
        try:
            self.spool.finish_roll()
            path = self.spool.path
            drain(path, offset_current=path == self._drained_cleanly)
            self._drained_cleanly = path
        except Exception:
            self._drained_cleanly = None
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.exception("audit spool: cannot write events to the database; retrying")
            connection.close()  # a broken connection is reopened on the next attempt
            if time.monotonic() - self._failing_since > LOG_AFTER:
                self._log_pending()
            return False
        if self._failing_since is not None:
            log.warning("audit spool: events written again after %.0fs",
                        time.monotonic() - self._failing_since)
            self._failing_since = None
        return True

    def _roll(self) -> None:
        """Roll the spool over when it is due; when a new file cannot be made (disk full),
        keep appending to the old one and try again a minute later."""
        if time.monotonic() < self._next_roll:
            return
        try:
            if self.spool.roll():
                self.spool.wake.set()  # the old file's last lines are written at once
        except OSError:
            log.exception("audit spool: cannot start a new spool file; keeping %s",
                          self.spool.path.name)
            self._next_roll = time.monotonic() + ADOPT_EVERY

    def _log_pending(self) -> None:
        """Write events the database has not taken for a long time to the log (once each)."""
        paths = [path for path in (self.spool.retired, self.spool.path) if path is not None]
        self._logged = {path: self._logged.get(path, 0) for path in paths}
        for path in paths:
            start = max(self._logged[path], _read_offset(path))
            for lines, end in _batches(path, start, final=False):
                for line in lines:
                    log.error("audit event not yet in the database: %s",
                              line.decode().rstrip())
                self._logged[path] = end

    def _adopt_orphans(self) -> None:
        """Now and then, replay files whose process died while the database was down."""
        if time.monotonic() < self._next_adopt:
            return
        self._next_adopt = time.monotonic() + ADOPT_EVERY
        replay_or_log(self.spool.folder)
