"""PGP client process: ``python -m bench._pgp encrypt|decrypt --home H --src S --dst D ...``.

Runs one OpenPGP operation exactly as the product does and reports its speed and memory:

* ``encrypt``: a partner delivery (``deliveries/encryption.py``): the stored file is read
  through the at-rest decryption (``atrest.EncryptedReader``) and streamed through
  ``Keyring.encrypt_stream`` to the recipient's key; the ciphertext goes to a plain file
  (a delivery sends it to the wire; it is not secret).
* ``decrypt``: the pipeline's decrypt step (``transfers/pgp_step.py``): an at-rest-encrypted
  PGP upload is streamed through ``Keyring.decrypt_stream`` into a new at-rest-encrypted
  file.

A process of its own so that its memory is only this operation's: after setup, its peak
RSS is reset (``/proc/self/clear_refs``) and read back (``VmHWM``) after the operation;
gpg's peak RSS is its ``VmHWM``, read every 20 ms while it runs (not ``ru_maxrss``, which
would count the Python process it was forked from). No Django: the at-rest and PGP modules
need none. Prints one JSON line. Dies by SIGALRM after ``BENCH_PEER_DEADLINE`` seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path

from transfers import atrest, pgp

BLOCK = 256 * 1024  # what deliveries/encryption.py buffers the at-rest reader with
S2K_COUNT = 65536  # as bench.pgp wrote into the keyring's agent settings


class _ReaderFile(io.RawIOBase):
    """An at-rest reader as the binary file object gpg's input pump wants."""

    def __init__(self, reader: atrest.EncryptedReader) -> None:
        super().__init__()
        self._reader = reader
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._reader.read(len(buffer))
        buffer[: len(data)] = data
        self.total += len(data)
        return len(data)


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class _ChildPeak(threading.Thread):
    """Follow the peak RSS (VmHWM) of this process's gpg children while they run."""

    def __init__(self) -> None:
        super().__init__(name="gpg-peak", daemon=True)
        self.peak_kib = 0
        self.seen: set[int] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            for pid in _children():
                status = _read_status(pid)
                if status.get("Name") == "gpg":
                    self.seen.add(pid)
                    self.peak_kib = max(self.peak_kib, int(status.get("VmHWM", "0 kB").split()[0]))


def _children() -> list[int]:
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def _read_status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def _encrypt(keyring: pgp.Keyring, args: argparse.Namespace, master: atrest.MasterKey) -> int:
    reader = atrest.EncryptedReader(args.src, master)
    source = _ReaderFile(reader)
    try:
        with open(args.dst, "wb") as dst:
            _reset_peak()
            keyring.encrypt_stream(io.BufferedReader(source, BLOCK), dst, [args.recipient])
    finally:
        reader.close()
    return source.total


def _decrypt(keyring: pgp.Keyring, args: argparse.Namespace, master: atrest.MasterKey) -> int:
    reader = atrest.EncryptedReader(args.src, master)
    writer = atrest.EncryptedWriter(args.dst, master)
    try:
        _reset_peak()
        keyring.decrypt_stream(
            reader,  # type: ignore[arg-type]  # file-like: read() suffices
            writer,  # type: ignore[arg-type]  # file-like: write() suffices
            passphrase=args.passphrase_file.read_text().strip(),
        )
    finally:
        reader.close()
    writer.close(fsync=True)
    return atrest.plaintext_size(args.dst)


_RSS_BEFORE: list[int] = []


def _reset_peak() -> None:
    """Forget the setup's peak RSS: from here VmHWM is the operation's own."""
    Path("/proc/self/clear_refs").write_text("5")
    _RSS_BEFORE.append(_status_kib("VmRSS"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench._pgp")
    ap.add_argument("op", choices=("encrypt", "decrypt"))
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--src", type=Path, required=True)
    ap.add_argument("--dst", type=Path, required=True)
    ap.add_argument("--master-key-file", type=Path, required=True)
    ap.add_argument("--recipient", default="")
    ap.add_argument("--passphrase-file", type=Path)
    args = ap.parse_args(argv)
    signal.alarm(max(1, int(os.environ.get("BENCH_PEER_DEADLINE", "600"))))
    master = atrest.MasterKey(args.master_key_file.read_bytes())
    keyring = pgp.Keyring(args.home, s2k_count=S2K_COUNT)
    sampler = _ChildPeak()
    sampler.start()
    c0, t0 = time.process_time(), time.perf_counter()
    done = (_encrypt if args.op == "encrypt" else _decrypt)(keyring, args, master)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    sampler.stop.set()
    sampler.join(5)
    gpg = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = {
        "bytes": done,
        "wall_s": wall,
        "python_cpu_s": cpu,
        "gpg_cpu_s": gpg.ru_utime + gpg.ru_stime,
        "python_rss_before_kib": _RSS_BEFORE[0] if _RSS_BEFORE else 0,
        "python_peak_rss_kib": _status_kib("VmHWM"),
        "gpg_peak_rss_kib": sampler.peak_kib,
        "gpg_processes_seen": len(sampler.seen),
        "output_bytes": args.dst.stat().st_size,
    }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
