"""Write-behind: a large file is handed to the disk as it grows, not all at its fsync."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from transfers import writeback
from transfers.atrest import EncryptedReader, EncryptedWriter, MasterKey

MIB = 1024 * 1024
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="sync_file_range is Linux's")


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
    assert _wait_started(before + 2) == before + 2  # at 2 and 4 MiB, not at 5
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
