"""Write-behind: a large file is handed to the disk as it grows, not all at its fsync."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from transfers import storage, writeback
from transfers.atrest import EncryptedReader, EncryptedWriter, MasterKey

MIB = 1024 * 1024
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="sync_file_range is Linux's")


def _settled() -> int:
    """Wait until this process's write-behind thread has no job; return the jobs done."""
    deadline = time.monotonic() + 10
    while writeback.waiting() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not writeback.waiting()
    return writeback.started()


def _wait_started(count: int) -> int:
    deadline = time.monotonic() + 10
    while writeback.started() < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return writeback.started()


@linux_only
def test_write_out_starts_on_a_real_file_and_a_bad_descriptor_is_an_error(tmp_path: Path):
    assert writeback.available()
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, os.urandom(MIB))
        writeback.start_writeout(fd)  # the ctypes signature is right: the kernel took it
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        writeback.start_writeout(fd)


@linux_only
def test_a_growing_file_is_handed_over_every_step_and_reads_back_whole(tmp_path: Path):
    master = MasterKey.generate()
    data = os.urandom(5 * MIB + 77)
    before = writeback.started()
    writer = writeback.wrap(EncryptedWriter(tmp_path / "f", master), 2 * MIB)
    for start in range(0, len(data), 256 * 1024):
        writer.write(memoryview(data)[start:start + 256 * 1024])
    writer.close(fsync=True)  # the writer closes its descriptor; the thread holds its own
    # at 2 and 4 MiB (one job for both when the second came while the first waited), not at 5
    assert before + 1 <= _settled() <= before + 2
    with EncryptedReader(tmp_path / "f", master) as reader:
        assert reader.read() == data


def test_a_small_file_or_a_switched_off_setting_starts_nothing(tmp_path: Path):
    master = MasterKey.generate()
    before = writeback.started()
    small = writeback.wrap(EncryptedWriter(tmp_path / "small", master), 8 * MIB)
    small.write(os.urandom(64 * 1024))
    small.close(fsync=True)
    plain = EncryptedWriter(tmp_path / "off", master)
    assert writeback.wrap(plain, 0) is plain
    plain.close()
    time.sleep(0.05)
    assert writeback.started() == before


@linux_only
def test_a_forked_process_starts_its_own_thread(tmp_path: Path):
    master = MasterKey.generate()
    writer = writeback.wrap(EncryptedWriter(tmp_path / "parent", master), MIB)
    writer.write(os.urandom(2 * MIB))
    writer.close(fsync=True)
    _wait_started(1)
    pid = os.fork()
    if pid == 0:  # the gateway forks its workers after start-up
        code = 1
        try:
            child = writeback.wrap(EncryptedWriter(tmp_path / "child", master), MIB)
            child.write(os.urandom(2 * MIB))
            child.close(fsync=True)
            code = 0 if _wait_started(1) == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _resident(path: Path) -> int:
    """Bytes of path in the page cache (util-linux's fincore)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True, timeout=30)
    return int(out.stdout.split()[0])


def _written_and_resident(
    path: Path, writer: writeback.Writer, open_reader: Callable[[Path], Any]
) -> int:
    """Write 40 MiB in 1 MiB pieces, wait for the thread, check it reads back; return the
    bytes of it left in the page cache."""
    data = os.urandom(40 * MIB)
    before = writeback.started()
    for start in range(0, len(data), MIB):
        writer.write(memoryview(data)[start:start + MIB])
    writer.close(fsync=True)
    assert _settled() > before
    resident = _resident(path)
    reader = open_reader(path)
    try:
        assert reader.read() == data  # what left the cache is read back from the disk
    finally:
        reader.close()
    return resident


@linux_only
def test_a_large_file_leaves_the_page_cache_behind_its_write_out(tmp_path: Path):
    master = MasterKey.generate()
    resident = {}
    for drop in (False, True):
        path = tmp_path / f"drop-{drop}"
        writer = writeback.wrap(EncryptedWriter(path, master), 4 * MIB, drop=drop)
        resident[drop] = _written_and_resident(
            path, writer, lambda p: EncryptedReader(p, master))
    assert resident[False] >= 36 * MIB  # kept: the measurement sees a cached file
    # dropped: at most the newest 4 MiB kept and the 4 MiB written after the last drop
    assert resident[True] <= 9 * MIB


@linux_only
def test_stored_files_leave_the_page_cache_unless_the_setting_keeps_them(
    tmp_path: Path, settings: Any
):
    settings.WRITE_BEHIND_BYTES = 4 * MIB
    resident = {}
    for drop in (True, False):
        settings.WRITE_BEHIND_DROP = drop
        path = tmp_path / f"stored-{drop}"
        resident[drop] = _written_and_resident(
            path, storage.open_writer(path), storage.open_reader)
    assert resident[True] <= 9 * MIB < 36 * MIB <= resident[False]


@linux_only
def test_the_thread_gets_its_own_open_file_description_not_a_dup(tmp_path: Path):
    # sync_file_range's waits consume a write-back error on the description they are given;
    # on a dup() that would be the writer's, and its fsync would then report success.
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x" * 4096)
        own = writeback.own_description(fd)
        assert own is not None
        try:
            os.lseek(own, 7, os.SEEK_SET)
            assert os.lseek(fd, 0, os.SEEK_CUR) == 4096  # a dup would share the offset
            writeback.start_writeout(own)  # read-only is enough for the kernel
        finally:
            os.close(own)
    finally:
        os.close(fd)


@linux_only
def test_a_file_waiting_for_the_thread_gets_one_job_not_one_per_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # A disk slower than the uploads must not pile up jobs, each holding a descriptor.
    master = MasterKey.generate()
    writer = writeback.wrap(EncryptedWriter(tmp_path / "f", master), MIB, drop=True)
    _settled()
    release = threading.Event()
    real = writeback.start_writeout

    def slow_disk(fd: int) -> None:
        release.wait(10)
        real(fd)

    monkeypatch.setattr(writeback, "start_writeout", slow_disk)
    before, fds = writeback.started(), len(os.listdir("/proc/self/fd"))
    try:
        for _ in range(24):  # 24 steps while the first job waits for the disk
            writer.write(os.urandom(MIB))
            assert writeback.waiting() <= 2  # the one running, one waiting for it
        assert len(os.listdir("/proc/self/fd")) <= fds + 2
    finally:
        release.set()
    writer.close(fsync=True)
    assert _settled() <= before + 2
    assert _resident(tmp_path / "f") <= 3 * MIB  # the last job covered all the steps
