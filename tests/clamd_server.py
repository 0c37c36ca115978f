"""Start a real clamd with a tiny home-made signature database for tests.

Not a test module: tests import `start_clamd` / `find_clamd` from here. No internet means no
official signatures, so we write our own: an MD5 (.hdb) signature of the EICAR test file and,
optionally, a body (.ndb) signature that finds the EICAR bytes at any offset.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

# Built from parts so this source file itself never matches an EICAR signature.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-" + b"ANTIVIRUS-TEST-FILE!$H+H*"
# Names as written to the database; clamd appends ".UNOFFICIAL" to any non-official signature.
EICAR_HASH_SIGNATURE = "Eicar-Test-Signature"
EICAR_BODY_SIGNATURE = "Eicar-Test-Signature.Body"

_PR_SET_PDEATHSIG = 1
_CLAMD_CANDIDATES = ("/usr/sbin/clamd", "/usr/local/sbin/clamd", "/opt/homebrew/sbin/clamd")
# sun_path holds 108 bytes including the NUL; pytest tmp dirs can get close to that.
_MAX_UNIX_PATH = 100

# Every clamd we started and have not stopped yet; atexit kills them if a test run aborts
# before fixture teardown (e.g. an error inside a finalizer or a hard interpreter exit path).
_LIVE: set[ClamdProcess] = set()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child when the parent dies (runs between fork and exec)."""
    # Covers the case no Python cleanup can: pytest itself SIGKILLed (e.g. a CI timeout).
    # The signal fires when the forking *thread* exits, so start clamd from a long-lived one.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def find_clamd() -> str | None:
    """Return the path of the clamd binary, or None if it is not installed."""
    override = os.environ.get("CLAMD_BINARY")
    if override:
        return override if os.access(override, os.X_OK) else None
    # /usr/sbin is often missing from a non-root PATH, so check the usual spots explicitly.
    found = shutil.which("clamd")
    if found:
        return found
    for candidate in _CLAMD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def write_signature_db(db_dir: Path, *, body_signature: bool = True) -> None:
    """Write the test signature database (EICAR hash, optionally EICAR body) into db_dir."""
    db_dir.mkdir(parents=True, exist_ok=True)
    md5 = hashlib.md5(EICAR, usedforsecurity=False).hexdigest()
    # .hdb: MD5:size:name. clamd also hashes archive members, so EICAR inside a zip matches.
    (db_dir / "portside-test.hdb").write_text(f"{md5}:{len(EICAR)}:{EICAR_HASH_SIGNATURE}\n")
    if body_signature:
        # .ndb: name:target(0=any):offset(*=anywhere):hex. Needed when EICAR is embedded in a
        # larger stream (a hash only matches a whole file), e.g. at the tail of 200 MB.
        (db_dir / "portside-test.ndb").write_text(f"{EICAR_BODY_SIGNATURE}:0:*:{EICAR.hex()}\n")


def _free_tcp_port() -> int:
    """Return a port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ClamdProcess:
    """A clamd child process bound to a fixed TCP port or unix socket."""

    def __init__(
        self,
        binary: str,
        config_path: Path,
        log_path: Path,
        stderr_path: Path,
        address: str,
        startup_timeout: float,
    ) -> None:
        self.binary = binary
        self.config_path = config_path
        self.log_path = log_path
        self.stderr_path = stderr_path
        self.address = address
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        # Seconds the last start() took until clamd answered PING.
        self.startup_seconds: float = 0.0

    def __repr__(self) -> str:
        pid = self.process.pid if self.process else None
        return f"<ClamdProcess {self.address} pid={pid}>"

    def __enter__(self) -> ClamdProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """Return the clamd pid while it runs."""
        return self.process.pid if self.process and self.process.poll() is None else None

    def is_running(self) -> bool:
        """Return True if the clamd process is alive."""
        return self.pid is not None

    def start(self) -> None:
        """Start clamd and block until it answers PING; kill it again on any failure."""
        if self.is_running():
            raise RuntimeError(f"clamd already running: {self!r}")
        started = time.monotonic()
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [self.binary, "--foreground", "--config-file", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        _LIVE.add(self)
        try:
            self._wait_ready(started)
        except BaseException:
            self.kill()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self, timeout: float = 10.0) -> None:
        """Stop clamd with SIGTERM, escalating to SIGKILL after timeout seconds."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.process = None
        _LIVE.discard(self)

    def kill(self) -> None:
        """Kill clamd at once with SIGKILL, like a crash."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.process = None
        _LIVE.discard(self)

    def restart(self) -> None:
        """Stop clamd (if running) and start it again on the same address."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of clamd's log and stderr, for failure messages."""
        out = []
        for path in (self.stderr_path, self.log_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(out)

    def _wait_ready(self, started: float) -> None:
        """Poll PING until clamd answers, it exits, or startup_timeout passes."""
        assert self.process is not None
        deadline = started + self.startup_timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"clamd exited with status {code} during startup\n{self.log_tail()}"
                )
            if self._ping():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"clamd did not answer PING within {self.startup_timeout}s\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _ping(self) -> bool:
        """Return True if clamd answers PING right now (no scanner module dependency)."""
        target: str | tuple[str, int]
        if self.address.startswith("unix://"):
            family, target = socket.AF_UNIX, self.address.removeprefix("unix://")
        else:
            host, _, port = self.address.removeprefix("tcp://").rpartition(":")
            family, target = socket.AF_INET, (host, int(port))
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(target)
                sock.sendall(b"zPING\0")
                return sock.recv(16).startswith(b"PONG")
        except OSError:
            return False


def start_clamd(
    tmp_dir: Path,
    *,
    tcp: bool = True,
    stream_max_length: str = "300M",
    max_file_size: str = "300M",
    max_scan_size: str = "300M",
    body_signature: bool = True,
    extra_config: Mapping[str, str] | None = None,
    startup_timeout: float = 60.0,
) -> ClamdProcess:
    """Write a clamd.conf and signature DB under tmp_dir, start clamd and wait for PING."""
    binary = find_clamd()
    if binary is None:
        raise FileNotFoundError("clamd is not installed (Debian: apt-get install clamav-daemon)")
    tmp_dir = Path(tmp_dir).resolve()
    db_dir = tmp_dir / "db"
    scan_tmp = tmp_dir / "tmp"
    scan_tmp.mkdir(parents=True, exist_ok=True)
    write_signature_db(db_dir, body_signature=body_signature)

    if tcp:
        port = _free_tcp_port()
        address = f"tcp://127.0.0.1:{port}"
        listen = {"TCPSocket": str(port), "TCPAddr": "127.0.0.1"}
    else:
        sock_path = tmp_dir / "clamd.sock"
        if len(os.fsencode(str(sock_path))) > _MAX_UNIX_PATH:
            # pytest's tmp dirs can exceed sun_path; fall back to a short private dir.
            short = Path(tempfile.mkdtemp(prefix="clamd-"))
            atexit.register(shutil.rmtree, short, ignore_errors=True)
            sock_path = short / "clamd.sock"
        address = f"unix://{sock_path}"
        listen = {"LocalSocket": str(sock_path), "LocalSocketMode": "660", "FixStaleSocket": "yes"}

    # No User line: clamd then keeps the caller's identity. As root that means it runs as root,
    # which is fine in a throwaway test dir; "User clamav" would need clamav to read tmp_dir.
    config: dict[str, str] = {
        "Foreground": "yes",
        **listen,
        "DatabaseDirectory": str(db_dir),
        # INSTREAM spools the whole stream to disk here; keep the 200 MB tests out of /tmp.
        "TemporaryDirectory": str(scan_tmp),
        "LogFile": str(tmp_dir / "clamd.log"),
        "LogTime": "yes",
        "PidFile": str(tmp_dir / "clamd.pid"),
        "StreamMaxLength": stream_max_length,
        "MaxFileSize": max_file_size,
        "MaxScanSize": max_scan_size,
        "AlertExceedsMax": "yes",
        "AlertEncrypted": "yes",
        "MaxThreads": "4",
        # The DB never changes under a test; skip the periodic self-check reload.
        "SelfCheck": "3600",
    }
    config.update(extra_config or {})
    config_path = tmp_dir / "clamd.conf"
    config_path.write_text("".join(f"{key} {value}\n" for key, value in config.items()))

    clamd = ClamdProcess(
        binary=binary,
        config_path=config_path,
        log_path=tmp_dir / "clamd.log",
        stderr_path=tmp_dir / "clamd.stderr",
        address=address,
        startup_timeout=startup_timeout,
    )
    clamd.start()
    return clamd


@atexit.register
def _kill_leftovers() -> None:
    """Kill any clamd this module started that was never stopped."""
    for clamd in list(_LIVE):
        with contextlib.suppress(Exception):
            clamd.kill()
