"""Harness core: results, the measurement registry, the run context, peers.

A measurement is a function ``fn(ctx: Context) -> Result | list[Result]``
registered with :func:`measurement`.  ``kind="limit"`` measurements describe
this machine (cipher speed, loopback TCP, disk...); ``kind="figure"``
measurements describe Portside and every figure must name the limit it is
compared with (``Result(..., limit="tls13.loopback.send")``).  The runner
computes ``ratio = value / limit.value`` from the same run.

Nothing here asserts on time.  Everything that can block is bounded:
subprocesses get a deadline and are killed on exit, sockets get kernel-level
send/receive timeouts, loops are bounded by byte counts.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MB = 1_000_000  # throughput is reported in decimal MB/s (10**6 bytes per second)

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

QUICK_DIVISOR = 32  # BENCH_QUICK=1: 1 GiB -> 32 MiB
QUICK_MIN_BYTES = 1 * MiB

MIN_BACKGROUND_WINDOW_S = 0.25

LIMIT = "limit"
FIGURE = "figure"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def mb_per_s(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / MB if seconds > 0 else math.inf


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    """One reported number.

    ``limit`` names another result of the same run (normally a ``kind="limit"``
    one) with the same unit; the runner fills ``ratio = value / limit_value``.
    A measurement may set ``ratio`` itself only for a ratio it cannot express
    that way (then it must still name ``limit``).
    """

    name: str
    value: float | None
    unit: str
    limit: str | None = None
    ratio: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    # filled by the runner
    kind: str = ""
    measurement: str = ""
    module: str = ""
    limit_value: float | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def resolve_ratios(results: Iterable[Result], *, partial: bool = False) -> None:
    """Fill ``ratio``/``limit_value`` for every result that names a limit.

    A figure without a usable limit becomes a failure: every figure must be
    shown against a limit measured in the same run. In a partial run (``--only``)
    a limit left out of the selection only leaves the ratio blank, with a note.
    """
    results = list(results)
    by_name = {r.name: r for r in results}
    for r in results:
        if r.failed:
            continue
        if r.limit is None:
            if r.kind == FIGURE:
                r.error = "figure names no limit (every figure needs one)"
            continue
        ref = by_name.get(r.limit)
        problem = None
        if ref is None and partial and r.value is not None:
            r.note = _join(r.note, f"no ratio: limit {r.limit!r} not selected by --only")
            continue
        if ref is None:
            problem = f"limit {r.limit!r} was not measured in this run"
        elif ref.failed or ref.value is None:
            problem = f"limit {r.limit!r} failed"
        elif ref.unit != r.unit:
            problem = f"unit mismatch: {r.unit!r} vs limit {ref.unit!r}"
        elif ref.value == 0:
            problem = f"limit {r.limit!r} is zero"
        elif r.value is None:
            problem = "no value was measured"
        if problem is not None:
            if r.kind == FIGURE:
                r.error = problem
            else:
                r.note = _join(r.note, problem)
            continue
        assert ref is not None and ref.value is not None and r.value is not None
        r.limit_value = ref.value
        if r.ratio is None:
            r.ratio = r.value / ref.value


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Measurement:
    name: str
    func: Callable[[Context], Result | Iterable[Result]]
    kind: str
    produces: tuple[str, ...]
    unit: str
    limit: str | None
    timeout: float
    module: str


REGISTRY: list[Measurement] = []


def measurement(
    name: str,
    *,
    kind: str = FIGURE,
    produces: Iterable[str] | None = None,
    unit: str = "MB/s",
    limit: str | None = None,
    timeout: float = 600.0,
) -> Callable[[Callable[[Context], Any]], Callable[[Context], Any]]:
    """Register ``fn(ctx) -> Result | list[Result]``.

    ``produces`` lists the result names the function returns (default: just
    ``name``); if the function raises, each of them is recorded as failed.
    ``limit`` is the default limit for results that do not name one.
    ``timeout`` bounds the whole measurement (see :class:`Context.remaining`).
    """
    if kind not in (LIMIT, FIGURE):
        raise ValueError(f"kind must be {LIMIT!r} or {FIGURE!r}")

    def deco(fn: Callable[[Context], Any]) -> Callable[[Context], Any]:
        if any(m.name == name for m in REGISTRY):
            raise ValueError(f"measurement {name!r} registered twice")
        REGISTRY.append(
            Measurement(
                name=name,
                func=fn,
                kind=kind,
                produces=tuple(produces) if produces else (name,),
                unit=unit,
                limit=limit,
                timeout=timeout,
                module=fn.__module__,
            )
        )
        return fn

    return deco


FACTS: list[Callable[[], dict[str, Any]]] = []


def facts(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Register a provider of run-level facts (machine, versions...) for the JSON."""
    FACTS.append(fn)
    return fn


# --------------------------------------------------------------------------- peers


_LIVE: set[Peer] = set()
_LIVE_LOCK = threading.Lock()


class PeerError(RuntimeError):
    pass


class Peer:
    """A child process in its own session, always killed (whole group) on exit."""

    def __init__(self, argv: list[str], *, deadline: float, name: str = "peer") -> None:
        self.name = name
        self.argv = argv
        self.deadline = deadline
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_DIR), env.get("PYTHONPATH", "")) if p
        )
        env["BENCH_PEER_DEADLINE"] = str(max(1, math.ceil(deadline - time.monotonic())))
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)
        # Watchdog: if the harness side blocks past the deadline, killing the
        # peer turns the block into an EOF/reset error instead of a hang.
        self._watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), self.kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def finish(self, grace: float = 30.0) -> dict[str, Any]:
        """Wait (bounded) for the peer to exit and return its JSON report line."""
        timeout = max(1.0, min(grace, self.deadline - time.monotonic()))
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate(timeout=10)
            raise PeerError(
                f"{self.name} did not exit within {timeout:.0f}s: {_tail(err)}"
            ) from None
        if self.proc.returncode != 0:
            raise PeerError(f"{self.name} exited with {self.proc.returncode}: {_tail(err)}")
        for line in reversed(out.decode(errors="replace").splitlines()):
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
        raise PeerError(f"{self.name} printed no JSON report: {_tail(err)}")

    def close(self) -> None:
        self._watchdog.cancel()
        self.kill()
        with contextlib.suppress(Exception):
            self.proc.communicate(timeout=10)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tail(err: bytes | None, n: int = 600) -> str:
    text = (err or b"").decode(errors="replace").strip()
    return text[-n:] if text else "(no stderr)"


def kill_all_peers() -> None:
    with _LIVE_LOCK:
        peers = list(_LIVE)
    for p in peers:
        p.kill()


atexit.register(kill_all_peers)


# --------------------------------------------------------------------------- sockets


def set_socket_timeouts(sock: socket.socket, seconds: float) -> None:
    """Kernel-level SO_RCVTIMEO/SO_SNDTIMEO on a *blocking* socket.

    Unlike ``sock.settimeout`` this keeps the fd blocking, so OpenSSL can
    drive it directly; a stalled peer surfaces as EAGAIN (BlockingIOError,
    or pyOpenSSL WantRead/WantWrite) instead of an endless block.
    """
    seconds = max(1.0, seconds)
    tv = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def listen_loopback() -> socket.socket:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    return ls


def accept_with_deadline(ls: socket.socket, deadline: float, peer: Peer | None) -> socket.socket:
    """Accept one connection, polling so that a dead peer or the deadline ends the wait."""
    ls.settimeout(0.2)
    while True:
        try:
            conn, _ = ls.accept()
        except TimeoutError:
            if peer is not None and peer.proc.poll() is not None:
                raise PeerError(f"{peer.name} exited before connecting") from None
            if time.monotonic() > deadline:
                raise TimeoutError("peer did not connect before the deadline") from None
            continue
        conn.setblocking(True)
        return conn


# --------------------------------------------------------------------------- cpu


def _proc_stat_busy() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    hz = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]
    total = sum(ticks)
    return (total - idle) / hz, total / hz


def _own_cpu() -> float:
    """CPU seconds of this process plus its reaped children (e.g. ``openssl speed``)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuWindow:
    """Measures wall time, own CPU, and the CPU everyone else burnt meanwhile.

    Own CPU includes children reaped inside the window; a peer reaped later
    reports its CPU itself (``report(peer_cpu_s=...)``).

    ``background_cpu_frac`` (other processes' CPU / (wall * cpus)) tells
    whether a number was taken on a busy machine; the runner shows it.
    """

    def __init__(self) -> None:
        self.wall_s = 0.0
        self.self_cpu_s = 0.0
        self._t0 = 0.0
        self._c0 = 0.0
        self._s0: tuple[float, float] | None = None
        self._s1: tuple[float, float] | None = None

    def __enter__(self) -> CpuWindow:
        self._s0 = _proc_stat_busy()
        self._c0 = _own_cpu()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._t0
        self.self_cpu_s = _own_cpu() - self._c0
        self._s1 = _proc_stat_busy()

    def report(self, peer_cpu_s: float = 0.0) -> dict[str, Any]:
        out: dict[str, Any] = {
            "wall_s": round(self.wall_s, 6),
            "harness_cpu_s": round(self.self_cpu_s, 4),
        }
        if peer_cpu_s:
            out["peer_cpu_s"] = round(peer_cpu_s, 4)
        # /proc/stat ticks are 10 ms: too coarse to judge windows shorter than this
        if self._s0 and self._s1 and self.wall_s >= MIN_BACKGROUND_WINDOW_S:
            busy = self._s1[0] - self._s0[0]
            other = max(0.0, busy - self.self_cpu_s - peer_cpu_s)
            ncpu = os.cpu_count() or 1
            out["machine_busy_cpu_s"] = round(busy, 3)
            out["background_cpu_s"] = round(other, 3)
            out["background_cpu_frac"] = round(min(1.0, other / (self.wall_s * ncpu)), 3)
        return out


class Progress:
    """Cheap per-window throughput samples (window in bytes) for a byte stream."""

    def __init__(self, total: int, windows: int = 16) -> None:
        self.step = max(1, total // windows)
        self.next_mark = self.step
        self.marks: list[tuple[int, float]] = []
        self.t0 = 0.0

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.marks = [(0, self.t0)]

    def at(self, done: int) -> None:
        # caller checks ``done >= next_mark`` inline to keep the hot loop cheap
        self.marks.append((done, time.perf_counter()))
        self.next_mark = done + self.step

    def stats(self) -> dict[str, Any]:
        rates = [
            mb_per_s(b1 - b0, t1 - t0)
            for (b0, t0), (b1, t1) in zip(self.marks, self.marks[1:], strict=False)
            if t1 > t0
        ]
        if not rates:
            return {}
        rates.sort()
        return {
            "window_bytes": self.step,
            "window_mb_s_min": round(rates[0], 1),
            "window_mb_s_median": round(rates[len(rates) // 2], 1),
            "window_mb_s_max": round(rates[-1], 1),
        }


# --------------------------------------------------------------------------- context


class Context:
    """What a measurement gets: mode, sizes, a scratch dir, peers, shared resources."""

    def __init__(self, *, quick: bool, workdir: Path) -> None:
        self.quick = quick
        self.workdir = workdir
        self.results: dict[str, Result] = {}
        self.deadline = math.inf
        self.current = ""
        self._stack = contextlib.ExitStack()
        self._shared: dict[str, Any] = {}

    # sizes -----------------------------------------------------------------
    def size(self, full: int, quick: int | None = None) -> int:
        """``full`` bytes normally; in quick mode ``quick`` or full/32 (>= 1 MiB)."""
        if not self.quick:
            return full
        if quick is not None:
            return quick
        return max(QUICK_MIN_BYTES, full // QUICK_DIVISOR)

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full

    def limit(self, name: str) -> Result:
        """A limit already measured in this run (limits run before figures).

        For figures that need the number itself (e.g. to size a transfer);
        the ratio is still computed by the runner from ``Result.limit``.
        """
        r = self.results.get(name)
        if r is None or r.failed or r.value is None:
            raise LookupError(f"limit {name!r} not available in this run")
        return r

    # time --------------------------------------------------------------------
    def remaining(self, cap: float | None = None) -> float:
        """Seconds left for the current measurement (>= 1), optionally capped."""
        left = max(1.0, self.deadline - time.monotonic())
        return min(left, cap) if cap is not None else left

    # processes -------------------------------------------------------------
    def python_peer(self, module: str, *args: str, name: str | None = None) -> Peer:
        """Start ``python -m module args...`` bounded by this measurement's deadline."""
        return Peer(
            [sys.executable, "-m", module, *args],
            deadline=min(self.deadline, time.monotonic() + 3600),
            name=name or module,
        )

    def spawn(self, argv: list[str], name: str = "peer") -> Peer:
        return Peer(argv, deadline=min(self.deadline, time.monotonic() + 3600), name=name)

    # shared resources (e.g. a running Portside for several FTPS measurements)
    def shared(self, key: str, factory: Callable[[Context], contextlib.AbstractContextManager]):
        """Enter ``factory(ctx)`` once per run; it is exited when the run ends."""
        if key not in self._shared:
            self._shared[key] = self._stack.enter_context(factory(self))
        return self._shared[key]

    def close(self) -> None:
        self._stack.close()
        kill_all_peers()


@contextlib.contextmanager
def scratch_file(directory: Path, name: str) -> Iterator[Path]:
    path = directory / name
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
