"""Start writing a large file's pages to the disk while it is still arriving (write-behind).

Without this, a large upload is all in the page cache when its last byte arrives (Linux
starts writing back only once 10 % of memory is dirty, or after 30 s), and the fsync before
its `226` writes the whole file then: a 1 GiB upload waited 0.5-0.7 s after its last byte
(docs/PERFORMANCE.md). Every `every` bytes, `sync_file_range(SYNC_FILE_RANGE_WRITE)` starts
the write-out of what is dirty and returns, so the disk works while the network does, and
the fsync at the end (still the promise before the `226`) finds little left to write.

Behind the write-out, what the disk already holds is dropped from the page cache
(`drop=True`, MFT_WRITE_BEHIND_DROP): the thread waits for the range older than the last
`every` bytes to be written (`sync_file_range` with both WAIT flags), then
`posix_fadvise(DONTNEED)`. A large upload then cycles through a few MiB of cache instead
of pushing a whole file's worth of other data out of it, and on VMs whose freed memory goes
back to the host (free page reporting) it no longer faults in new memory for every page it
writes: a 1 GiB pwrite loop took 3.7-4.4 s of system CPU that way on the 2026-11-23 VM and
0.41-0.50 s with the drop (docs/PERFORMANCE.md). Readers of the file afterwards (the scan,
a download) read it from the disk.

Hand-written because Python's os module has no sync_file_range (Linux only): it is called
through ctypes. It can block while the disk's queue is full, so it runs on one thread per
process, never on an event loop; on a system without it nothing is started early and the
fsync writes everything, as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import mmap
import os
import queue
import threading
from typing import Any, Protocol

log = logging.getLogger(__name__)

# <fcntl.h>: wait for write-out already under way, start write-out of dirty pages, wait for it
SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4
_WRITTEN = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER


class Writer(Protocol):
    """A stored file being written (`transfers.storage.open_writer`)."""

    def write(self, data: bytes | bytearray | memoryview) -> int: ...
    def close(self, fsync: bool = False) -> None: ...
    def fileno(self) -> int: ...


def _load() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)  # CDLL calls release the GIL
    call = getattr(libc, "sync_file_range", None)
    if call is None:
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


_sync_file_range = _load()


class _Starter:
    """One thread per process that starts the write-out of files handed to it."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[int, FileWriteOut]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._counting = threading.Lock()
        self._pid = 0
        self.started = 0  # jobs this process's thread has done
        self.waiting = 0  # jobs handed to the thread and not done yet

    def submit(self, fd: int, file: FileWriteOut) -> None:
        """Start writing out fd's dirty pages soon, then drop what `file` may; fd stays
        the caller's. A file with a job still waiting gets no second one: that job reads
        the file's size when it runs, so it covers what was written since. A disk slower
        than the uploads then holds one job (and one descriptor) per file, not a queue
        growing with every `every` bytes."""
        if self._pid != os.getpid():
            self._start()
        if file.queued:
            return
        own = own_description(fd)
        if own is not None:
            file.queued = True
            with self._counting:
                self.waiting += 1
            self._queue.put((own, file))

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # After a fork the parent's thread is not ours: start this process's own (and
            # a lock of our own: the parent's thread may have held its one at the fork).
            self._queue = queue.SimpleQueue()
            self._counting = threading.Lock()
            self.started = self.waiting = 0
            threading.Thread(target=self._run, name="write-behind", daemon=True).start()
            self._pid = os.getpid()

    def _run(self) -> None:
        pending = self._queue
        while True:
            fd, file = pending.get()
            file.queued = False  # bytes written from here on need another job
            try:
                start_writeout(fd)
                file.drop(fd)
            except OSError as err:  # the fsync at the end still writes it all
                log.debug("write-behind: %s", err)
            finally:
                os.close(fd)
                with self._counting:
                    self.started += 1
                    self.waiting -= 1


def own_description(fd: int) -> int | None:
    """Open fd's file again for the thread; None where that is not possible (no /proc).

    A descriptor of the thread's own, because the caller may close fd (and its number be
    reused) before the thread gets to it; and not a dup() but a new open file description:
    sync_file_range's waits check and advance the description's write-back error state
    (the kernel's file_fdatawait_range), so on a dup they could take a failed write-back's
    error from the writer's own fsync, which must report it before the `226`. A new
    description has its own state, and both see an error that happens while both are open.
    """
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:  # nothing started early: the fsync at the end writes it all
        log.debug("write-behind: %s", err)
        return None


def start_writeout(fd: int) -> None:
    """Start writing fd's dirty pages to the disk and return (may wait for a full queue)."""
    _sync_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)


def _sync_range(fd: int, offset: int, nbytes: int, flags: int) -> None:
    if _sync_file_range is None:
        raise OSError(errno.ENOSYS, "sync_file_range is not available here")
    if _sync_file_range(fd, offset, nbytes, flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class FileWriteOut:
    """One file's state between its writer and the thread."""

    def __init__(self, keep: int | None) -> None:
        self.keep = keep  # with a drop: the newest bytes stay cached, still being written
        self.dropped = 0  # the thread's alone
        self.queued = False  # a job for this file is waiting for the thread

    def drop(self, fd: int) -> None:
        """Wait until the file's bytes older than the newest `keep` are on the disk, then
        drop them from the page cache (nothing without a drop)."""
        if self.keep is None:
            return
        end = (os.fstat(fd).st_size - self.keep) // mmap.PAGESIZE * mmap.PAGESIZE
        if end <= self.dropped:
            return
        _sync_range(fd, self.dropped, end - self.dropped, _WRITTEN)
        os.posix_fadvise(fd, self.dropped, end - self.dropped, os.POSIX_FADV_DONTNEED)
        self.dropped = end


_starter = _Starter()


def started() -> int:
    """Return how many write-out jobs this process's thread has done (for tests)."""
    return _starter.started if _starter._pid == os.getpid() else 0


def waiting() -> int:
    """Return how many write-out jobs wait for this process's thread or run (for tests)."""
    return _starter.waiting if _starter._pid == os.getpid() else 0


def available() -> bool:
    """Return True where write-behind works (Linux with sync_file_range)."""
    return _sync_file_range is not None


class WriteBehind:
    """A writer that starts the write-out of its file every `every` bytes written."""

    def __init__(self, writer: Writer, every: int, *, drop: bool = False) -> None:
        self._writer = writer
        self._every = every
        self._due = every
        self._file = FileWriteOut(keep=every if drop else None)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        written = self._writer.write(data)
        self._due -= len(data)
        if self._due <= 0:
            self._due = self._every
            _starter.submit(self._writer.fileno(), self._file)
        return written

    def fileno(self) -> int:
        return self._writer.fileno()

    def close(self, fsync: bool = False) -> None:
        self._writer.close(fsync=fsync)


def wrap(writer: Writer, every: int, *, drop: bool = False) -> Writer:
    """Return writer with write-behind every `every` bytes (and the written pages dropped
    from the page cache behind it with `drop`), or writer itself where it is switched off
    (0) or unavailable."""
    if every <= 0 or not available():
        return writer
    return WriteBehind(writer, every, drop=drop)
