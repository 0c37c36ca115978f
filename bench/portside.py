"""Start and stop a whole Portside for the product measurements.

:func:`main_platform` (``ctx.shared("portside", ...)``) gives every measurement of a
run one platform, the way ``make run`` would start it but on free ports and in a
temporary ``MFT_DATA_DIR`` under the run's scratch dir:

* ``manage.py migrate``, ``bootstrap``, ``create_partner_user --generate-password``;
* a real clamd (``tests/clamd_server.py``, limits raised for the 1 GiB file), ``MFT_CLAMD``;
* ``manage.py run_gateway`` with ``MFT_GATEWAY_WORKERS=2``;
* a Celery worker (prefork, 2 processes) on the embedded filesystem broker, or on
  Redis for the instance started with ``broker=BENCH_REDIS``, for the ``celery`` queue, and
  the ``outbound`` worker (threads) for partner deliveries, as ``make run`` starts them;
* gunicorn as ``make run`` starts it (2 workers x 4 threads).

:func:`uncached_gateway` adds a second gateway to a platform with the login cache off
(``MFT_LOGIN_CACHE_SECONDS=0``), so uncached logins can be measured beside cached ones.

:func:`partner_server` starts a partner's FTPS server for a platform (stock pyftpdlib TLS,
``tests/remote_ftps.py``, in a process of its own), the endpoint that pushes go to.

Product defaults stay on: encryption at rest, audit, hashing, scanning.  The only
settings changed are addresses and ports, and the per-address connection cap
(every bench client comes from 127.0.0.1; see docs/PERFORMANCE.md).

Every service runs under :mod:`bench._reaper` in a process group of its own and
dies with the harness, however the harness ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.core import REPO_DIR, Context, Peer

PARTNER_USER = "bench"
WORKER_CONCURRENCY = 2
OUTBOUND_CONCURRENCY = 8  # make run's default (MFT_OUTBOUND_CONCURRENCY)
GATEWAY_WORKERS = 2
PASSIVE_PORTS = 500  # wider than the largest concurrency (200 sessions)
MAX_CONNECTIONS_PER_IP = 1000  # all bench clients share 127.0.0.1
CLAMD_LIMIT = "1200M"  # the 1 GiB file must be scanned, not held as oversize
STOP_GRACE_S = 15.0
_PR_SET_PDEATHSIG = 1
_OWN_ENV = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "DJANGO_SETTINGS_MODULE",
)


def _die_with_harness() -> None:
    """In the child before exec: SIGTERM when the harness thread that forked us exits."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# --------------------------------------------------------------------------- ports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_range(count: int) -> tuple[int, int]:
    """A block of ``count`` ports free right now, below the ephemeral range."""
    try:
        low_eph = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low_eph = 32768
    top = max(12000, low_eph - count - 1)
    for _ in range(50):
        base = random.randrange(10000, top)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base, base + count - 1
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise OSError(f"no block of {count} free ports found")


# --------------------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def children_of(pid: int) -> list[int]:
    """Direct children of a process (scans /proc: no CONFIG_PROC_CHILDREN needed)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry))[1]) == pid:
                out.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(out)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            f = _stat_fields(pid)
            total += int(f[11]) + int(f[12])
    return total / CLK_TCK


def status_kib(pids: list[int], key: str) -> int:
    """Sum of a /proc/<pid>/status field (``VmRSS``, ``VmHWM``) in KiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
                    break
    return total


# --------------------------------------------------------------------------- services


class Service:
    """One long-running process (and its process group) under ``bench._reaper``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.log = name, argv, log
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench._reaper", "--", *argv],
                cwd=REPO_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_harness,
            )

    @property
    def main_pid(self) -> int | None:
        """The service's own pid (the reaper's child)."""
        kids = children_of(self.proc.pid)
        return kids[0] if kids else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 1500) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-n:]
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


# --------------------------------------------------------------------------- platform


@dataclass
class Portside:
    """A running platform: where it listens, who may log in, its processes."""

    name: str
    data_dir: Path
    env: dict[str, str]
    ftps_port: int
    passive: tuple[int, int]
    web_port: int | None
    broker: str
    username: str = PARTNER_USER
    password: str = ""
    services: dict[str, Service] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    target_name: str = "bench-target.json"

    @property
    def cafile(self) -> Path:
        return self.data_dir / "tls" / "server.crt"

    @property
    def migrated_db(self) -> Path:
        """A copy of the database taken right after ``migrate`` (no rows yet)."""
        return self.data_dir / "migrated.sqlite3"

    @property
    def target_file(self) -> Path:
        """JSON the client processes read: address, credentials, CA (no secrets in argv)."""
        return self.data_dir / self.target_name

    def write_target(self) -> None:
        self.target_file.write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "port": self.ftps_port,
                    "user": self.username,
                    "password": self.password,
                    "cafile": str(self.cafile),
                }
            )
        )
        self.target_file.chmod(0o600)

    def manage(
        self,
        *args: str,
        timeout: float = 120,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py ARGS`` against this platform; raise with its stderr on failure."""
        proc = subprocess.run(
            [sys.executable, str(REPO_DIR / "manage.py"), *args],
            cwd=REPO_DIR,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"manage.py {args[0]} exited {proc.returncode}: {proc.stderr.strip()[-800:]}"
            )
        return proc

    def django_args(self) -> list[str]:
        """Arguments telling ``bench._django`` which platform to configure itself for."""
        return ["--data-dir", str(self.data_dir), "--broker", self.broker]

    def django_peer(self, ctx: Context, *args: str, name: str = "django") -> Peer:
        return ctx.python_peer("bench._django", *self.django_args(), *args, name=name)

    def gateway_pids(self) -> list[int]:
        """The gateway's event-loop worker processes (the parent only supervises)."""
        parent = self.services["gateway"].main_pid
        return children_of(parent) if parent else []

    def check_alive(self) -> None:
        for svc in self.services.values():
            if not svc.alive():
                raise RuntimeError(f"{svc.name} of {self.name} died: {svc.log_tail()}")

    def stop(self) -> None:
        for svc in self.services.values():
            svc.stop()


def base_env(data_dir: Path) -> dict[str, str]:
    """The harness's environment minus any Portside configuration, plus MFT_DATA_DIR."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFT_") and k not in _OWN_ENV}
    env["MFT_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_DIR), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_banner(port: int, deadline: float, svc: Service) -> None:
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(5)
                if s.recv(64).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        if not svc.alive():
            raise RuntimeError(f"gateway died at start: {svc.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"gateway did not greet: {svc.log_tail()}")
        time.sleep(0.1)


def _wait_log(svc: Service, pattern: str, deadline: float) -> None:
    rx = re.compile(pattern)
    while not rx.search(svc.log_tail(200_000)):
        if not svc.alive():
            raise RuntimeError(f"{svc.name} died at start: {svc.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{svc.name} not ready: {svc.log_tail()}")
        time.sleep(0.1)


def wait_http(port: int, deadline: float, svc: Service) -> None:
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(10)
                s.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/"):
                    return
        except OSError:
            pass
        if not svc.alive():
            raise RuntimeError(f"web died at start: {svc.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"web did not answer: {svc.log_tail()}")
        time.sleep(0.1)


def clamd_factory(ctx: Context):
    """One clamd per run, shared by every platform the run starts."""
    from tests.clamd_server import start_clamd

    @contextlib.contextmanager
    def run() -> Iterator[Any]:
        t0 = time.monotonic()
        clamd = start_clamd(
            ctx.workdir / "clamd",
            tcp=True,
            stream_max_length=CLAMD_LIMIT,
            max_file_size=CLAMD_LIMIT,
            max_scan_size=CLAMD_LIMIT,
        )
        clamd.bench_start_s = time.monotonic() - t0  # type: ignore[attr-defined]
        try:
            yield clamd
        finally:
            clamd.stop()

    return run()


def clamd(ctx: Context) -> Any:
    return ctx.shared("clamd", clamd_factory)


@contextlib.contextmanager
def platform(
    ctx: Context, name: str, *, broker: str = "filesystem://", web: bool = True
) -> Iterator[Portside]:
    """Start a Portside (see module doc); stop every process on exit."""
    t0 = time.monotonic()
    scanner = clamd(ctx)
    data_dir = ctx.workdir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    env = base_env(data_dir)
    passive = free_port_range(PASSIVE_PORTS)
    ps = Portside(
        name=name,
        data_dir=data_dir,
        env=env,
        ftps_port=free_port(),
        passive=passive,
        web_port=free_port() if web else None,
        broker=broker,
    )
    env.update(
        {
            "CELERY_BROKER_URL": broker,
            "MFT_CLAMD": scanner.address,
            "MFT_FTPS_PORT": str(ps.ftps_port),
            "MFT_FTPS_IMPLICIT_PORT": str(free_port()),
            "MFT_PASSIVE_PORTS": f"{passive[0]}-{passive[1]}",
            "MFT_WEB_PORT": str(ps.web_port) if ps.web_port else "off",
            "MFT_GATEWAY_WORKERS": str(GATEWAY_WORKERS),
            "MFT_GATEWAY_MAX_CONNECTIONS_PER_IP": str(MAX_CONNECTIONS_PER_IP),
            "MFT_WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        }
    )
    try:
        ps.manage("migrate", "--noinput", "-v", "0")
        with contextlib.suppress(OSError):  # a migrated, empty database for other uses
            shutil.copyfile(data_dir / "portside.sqlite3", data_dir / "migrated.sqlite3")
        ps.manage("bootstrap")
        made = ps.manage(
            "create_partner_user", ps.username, "--partner", "Bench Partner", "--generate-password"
        )
        ps.password = made.stdout.strip().splitlines()[-1]
        ps.write_target()
        ps.info["setup_s"] = round(time.monotonic() - t0, 2)
        _start_services(ps, ctx)
        ps.info["start_s"] = round(time.monotonic() - t0, 2)
        yield ps
    finally:
        ps.stop()


def _celery_worker(ps: Portside, pool: str, concurrency: int, queue: str,
                   prefix: str) -> list[str]:
    """Return the command of a Celery worker for one queue, as `make run` starts it."""
    return [sys.executable, "-m", "celery", "-A", "mft", "worker", "--pool", pool,
            "-c", str(concurrency), "--queues", queue, "--without-gossip", "--without-mingle",
            "--loglevel", "INFO", "--hostname", f"{prefix}-{ps.name}-{os.getpid()}@%h"]


def _start_services(ps: Portside, ctx: Context) -> None:
    py, logs = sys.executable, ps.data_dir
    ps.services["gateway"] = Service(
        "gateway", [py, str(REPO_DIR / "manage.py"), "run_gateway"], ps.env, logs / "gateway.log"
    )
    ps.services["worker"] = Service(
        "worker", _celery_worker(ps, "prefork", WORKER_CONCURRENCY, "celery", "bench"),
        ps.env, logs / "worker.log",
    )
    ps.services["outbound"] = Service(
        "outbound",
        _celery_worker(ps, "threads", OUTBOUND_CONCURRENCY, "outbound", "bench-outbound"),
        ps.env, logs / "outbound.log",
    )
    if ps.web_port:
        ps.services["web"] = Service(
            "web",
            [
                py,
                "-m",
                "gunicorn",
                "mft.wsgi:application",
                "--bind",
                f"127.0.0.1:{ps.web_port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--graceful-timeout",
                "10",
                "--access-logfile",
                "-",
                "--chdir",
                str(REPO_DIR),
            ],
            ps.env,
            logs / "web.log",
        )
    deadline = time.monotonic() + ctx.remaining(cap=120)
    _wait_banner(ps.ftps_port, deadline, ps.services["gateway"])
    _wait_log(ps.services["worker"], r"@\S+ ready\.", deadline)
    _wait_log(ps.services["outbound"], r"@\S+ ready\.", deadline)
    if ps.web_port:
        wait_http(ps.web_port, deadline, ps.services["web"])
    while len(ps.gateway_pids()) < GATEWAY_WORKERS and time.monotonic() < deadline:
        time.sleep(0.1)


@contextlib.contextmanager
def _uncached_gateway(ctx: Context, ps: Portside) -> Iterator[Portside]:
    """Run a second gateway on the platform's data with the login cache off; stop it after."""
    gw = replace(
        ps,
        name=f"{ps.name}-uncached",
        env=dict(ps.env),
        ftps_port=free_port(),
        passive=free_port_range(PASSIVE_PORTS),
        services={},
        info={},
        target_name="bench-target-uncached.json",
    )
    gw.env.update(
        {
            "MFT_FTPS_PORT": str(gw.ftps_port),
            "MFT_FTPS_IMPLICIT_PORT": "off",
            "MFT_PASSIVE_PORTS": f"{gw.passive[0]}-{gw.passive[1]}",
            "MFT_LOGIN_CACHE_SECONDS": "0",
        }
    )
    gw.write_target()
    gw.services["gateway"] = Service(
        "gateway",
        [sys.executable, str(REPO_DIR / "manage.py"), "run_gateway"],
        gw.env,
        ps.data_dir / "gateway-uncached.log",
    )
    try:
        deadline = time.monotonic() + ctx.remaining(cap=120)
        _wait_banner(gw.ftps_port, deadline, gw.services["gateway"])
        while len(gw.gateway_pids()) < GATEWAY_WORKERS and time.monotonic() < deadline:
            time.sleep(0.1)
        yield gw
    finally:
        gw.stop()


def uncached_gateway(ctx: Context, ps: Portside) -> Portside:
    """The platform's second gateway, without the login cache (started on first use)."""
    gw: Portside = ctx.shared(f"{ps.name}-uncached", lambda c: _uncached_gateway(c, ps))
    gw.check_alive()
    return gw


# A partner's server in its own process, so its TLS work is not charged to the harness.
_PARTNER_SCRIPT = """
import json, os, sys, time
from pathlib import Path
from tests.remote_ftps import PASSWORD, USERNAME, StockServer, make_certificate
root, info = Path(sys.argv[1]), Path(sys.argv[2])
(root / "files").mkdir(parents=True, exist_ok=True)
server = StockServer(root / "files", make_certificate(root, "partner-ftps")).start()
info.write_text(json.dumps({"port": server.port, "user": USERNAME, "password": PASSWORD,
                            "sha256": server.certificate.sha256, "root": str(root / "files")}))
os.chmod(info, 0o600)
while True:
    time.sleep(3600)
"""


@dataclass
class Partner:
    """A partner's FTPS server: where it listens, its login and its certificate's pin."""

    port: int
    user: str
    password: str
    sha256: str
    root: Path
    info_file: Path
    service: Service


@contextlib.contextmanager
def _partner_server(ctx: Context, ps: Portside) -> Iterator[Partner]:
    folder = ps.data_dir / "partner-ftps"
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / "server.json"
    info.unlink(missing_ok=True)
    env = base_env(folder)
    svc = Service(
        "partner-ftps",
        [sys.executable, "-c", _PARTNER_SCRIPT, str(folder), str(info)],
        env,
        folder / "server.log",
    )
    try:
        deadline = time.monotonic() + ctx.remaining(cap=60)
        while not info.exists() or not info.read_text():
            if not svc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"partner FTPS server did not start: {svc.log_tail()}")
            time.sleep(0.05)
        data = json.loads(info.read_text())
        yield Partner(
            data["port"],
            data["user"],
            data["password"],
            data["sha256"],
            Path(data["root"]),
            info,
            svc,
        )
    finally:
        svc.stop()


def partner_server(ctx: Context, ps: Portside) -> Partner:
    """The platform's partner FTPS server (started on first use, checked alive)."""
    partner: Partner = ctx.shared(f"{ps.name}-partner", lambda c: _partner_server(c, ps))
    if not partner.service.alive():
        raise RuntimeError(f"partner FTPS server died: {partner.service.log_tail()}")
    return partner


def worker_pids(ps: Portside) -> list[int]:
    """The pipeline worker's processes (the main one and its pool), for their CPU."""
    main = ps.services["worker"].main_pid
    return [main, *children_of(main)] if main else []


def main_platform(ctx: Context) -> Portside:
    """The run's platform on the embedded broker (started on first use, checked alive)."""
    ps: Portside = ctx.shared("portside", lambda c: platform(c, "portside"))
    ps.check_alive()
    return ps


def redis_platform(ctx: Context, url: str) -> Portside:
    """A second platform whose gateway and worker use Redis (only with BENCH_REDIS)."""
    ps: Portside = ctx.shared(
        "portside-redis", lambda c: platform(c, "portside-redis", broker=url, web=False)
    )
    ps.check_alive()
    return ps


# --------------------------------------------------------------------------- stats


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def summary(values: list[float], scale: float = 1.0, digits: int = 3) -> dict[str, float | None]:
    """p50/p95/p99/max of values (times ``scale``), rounded."""

    def r(v: float | None) -> float | None:
        return None if v is None else round(v * scale, digits)

    return {
        "n": len(values),
        "p50": r(pct(values, 0.5)),
        "p95": r(pct(values, 0.95)),
        "p99": r(pct(values, 0.99)),
        "max": r(max(values) if values else None),
    }


# --------------------------------------------------------------------------- machine


def _descendants(root: int) -> list[int]:
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parent[int(entry)] = int(_stat_fields(int(entry))[1])
    out, frontier = [], [root]
    while frontier:
        nxt = [pid for pid, pp in parent.items() if pp in frontier]
        out += nxt
        frontier = nxt
    return out


def tree_cpu() -> float:
    """CPU seconds of the harness and everything it started (live or reaped)."""
    t = os.times()
    total = (t.user + t.system + t.children_user + t.children_system) * CLK_TCK
    for pid in _descendants(os.getpid()):
        with contextlib.suppress(OSError, ValueError, IndexError):
            f = _stat_fields(pid)
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / CLK_TCK


class MachineWindow:
    """Wall time, our whole tree's CPU, and what everyone else burnt meanwhile.

    ``background_cpu_frac`` in the report makes the runner flag numbers taken on a
    busy machine (other processes' CPU / (wall x CPUs)).
    """

    def __enter__(self) -> MachineWindow:
        from bench.core import _proc_stat_busy

        self._busy0 = _proc_stat_busy()
        self._ours0 = tree_cpu()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        from bench.core import _proc_stat_busy

        self.wall_s = time.perf_counter() - self._t0
        self.ours_s = tree_cpu() - self._ours0
        self._busy1 = _proc_stat_busy()

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "window_s": round(self.wall_s, 3),
            "our_tree_cpu_s": round(self.ours_s, 3),
        }
        if self._busy0 and self._busy1 and self.wall_s >= 0.25:
            busy = self._busy1[0] - self._busy0[0]
            other = max(0.0, busy - self.ours_s)
            ncpu = os.cpu_count() or 1
            out["machine_busy_cpu_s"] = round(busy, 3)
            out["background_cpu_frac"] = round(min(1.0, other / (self.wall_s * ncpu)), 3)
        return out
