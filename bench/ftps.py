"""FTPS figures: single-stream throughput and CPU, small files, logins, many sessions.

Every figure runs against the run's Portside (:mod:`bench.portside`) with the
product's defaults on, driven by :mod:`bench._ftps` client processes (TLS 1.3,
PROT P, passive, data connections resuming the control session, 1 MiB buffers).

Limits defined here (all measured in the same run):

* ``tls13.loopback.{send,recv}.server_cpu`` -- CPU seconds per GB of the TLS
  *server* end of the ``tls13.loopback.*`` streams (the peer process, pyOpenSSL):
  what a bare TLS server pays to move the same bytes.
* ``argon2.verify.seq`` / ``.parallel`` -- Django's Argon2 hasher (the product's
  parameters) verifying a password: one at a time, and one thread per CPU.
  Every uncached login verifies once, so these cap logins/s.
* ``disk.small_files`` -- 4 KiB files written, fsynced and renamed into place,
  one after another: the durable-storage floor of a small upload.
* ``mem.total`` -- the machine's memory, for gateway RSS.
* ``tls13.loopback.rtt`` -- p99 of a small request/response over a TLS 1.3
  connection between two Python processes (pyOpenSSL server): the floor of a
  NOOP round trip.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from bench.core import (
    LIMIT,
    MB,
    Context,
    GiB,
    KiB,
    MiB,
    Peer,
    Result,
    accept_with_deadline,
    listen_loopback,
    measurement,
    set_socket_timeouts,
)
from bench.limits import TLS_RECV, TLS_SEND, resident_bytes
from bench.portside import (
    GATEWAY_WORKERS,
    MachineWindow,
    Portside,
    main_platform,
    pct,
    status_kib,
    summary,
    uncached_gateway,
)

SEND_CPU = "tls13.loopback.send.server_cpu"
RECV_CPU = "tls13.loopback.recv.server_cpu"
ARGON_SEQ = "argon2.verify.seq"
ARGON_PAR = "argon2.verify.parallel"
SMALL_DISK = "disk.small_files"
MEM_TOTAL = "mem.total"
TLS_RTT = "tls13.loopback.rtt"

SINGLE_BYTES = 1 * GiB
SMALL_FILES = 1000
SMALL_SIZE = 4 * KiB
CONC_BYTES = 50 * MiB
NOOP_INTERVAL_S = 0.02


# --------------------------------------------------------------------------- limits


@measurement(
    "tls13.loopback.server_cpu", kind=LIMIT, produces=(SEND_CPU, RECV_CPU), unit="s/GB", timeout=30
)
def server_cpu(ctx: Context) -> list[Result]:
    out = []
    for name, source, role in ((SEND_CPU, TLS_SEND, "receiving"), (RECV_CPU, TLS_RECV, "sending")):
        peer = ctx.limit(source).extra["peer"]
        out.append(
            Result(
                name,
                peer["cpu_s"] / (peer["bytes"] / 1e9),
                "s/GB",
                note=f"TLS server {role}, from {source}",
                extra={"peer": peer},
            )
        )
    return out


def _argon2_rate(threads: int, each: int) -> tuple[float, dict[str, Any]]:
    from django.contrib.auth.hashers import Argon2PasswordHasher

    hasher = Argon2PasswordHasher()
    encoded = hasher.encode("correct horse battery staple", hasher.salt())
    start = threading.Barrier(threads + 1)

    def work() -> None:
        start.wait()
        for _ in range(each):
            if not hasher.verify("correct horse battery staple", encoded):
                raise AssertionError("argon2 verify failed")

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    c0 = time.process_time()
    with MachineWindow() as win:
        start.wait()
        t0 = time.perf_counter()
        for t in pool:
            t.join()
        wall = time.perf_counter() - t0
    params = {
        "time_cost": hasher.time_cost,
        "memory_cost_kib": hasher.memory_cost,
        "parallelism": hasher.parallelism,
    }
    return threads * each / wall, {
        "threads": threads,
        "verifies": threads * each,
        "wall_s": round(wall, 3),
        "cpu_s": round(time.process_time() - c0, 3),
        **params,
        **win.report(),
    }


@measurement("argon2.verify", kind=LIMIT, produces=(ARGON_SEQ, ARGON_PAR), unit="/s", timeout=180)
def argon2_verify(ctx: Context) -> list[Result]:
    each = ctx.pick(12, 3)
    seq, seq_x = _argon2_rate(1, each)
    ncpu = os.cpu_count() or 1
    par, par_x = _argon2_rate(ncpu, each)
    return [
        Result(ARGON_SEQ, seq, "/s", note="Django Argon2 verifies/s, 1 thread", extra=seq_x),
        Result(ARGON_PAR, par, "/s", note=f"Django Argon2 verifies/s, {ncpu} threads", extra=par_x),
    ]


@measurement(SMALL_DISK, kind=LIMIT, unit="files/s", timeout=120)
def small_files_disk(ctx: Context) -> Result:
    count = ctx.pick(SMALL_FILES, 200)
    d = ctx.workdir / "small-disk"
    d.mkdir(exist_ok=True)
    data = os.urandom(SMALL_SIZE)
    with MachineWindow() as win:
        for i in range(count):
            tmp = d / f".{i}.part"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, d / f"{i}.bin")
    for p in d.iterdir():
        p.unlink()
    return Result(
        SMALL_DISK,
        count / win.wall_s,
        "files/s",
        note="4 KiB write+fsync+rename, serial",
        extra={"files": count, **win.report()},
    )


@measurement(MEM_TOTAL, kind=LIMIT, unit="MB", timeout=10)
def mem_total(ctx: Context) -> Result:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return Result(MEM_TOTAL, int(line.split()[1]) * 1024 / MB, "MB", note="MemTotal")
    raise LookupError("MemTotal not in /proc/meminfo")


@measurement(TLS_RTT, kind=LIMIT, unit="ms", timeout=60)
def tls_rtt(ctx: Context) -> Result:
    from bench.limits import _bench_cert
    from bench.tlsutil import TlsStream, client_context

    cert, key = _bench_cert(ctx)
    rounds = ctx.pick(2000, 300)
    ls = listen_loopback()
    with (
        ls,
        ctx.python_peer(
            "bench._echo",
            "--port",
            str(ls.getsockname()[1]),
            "--cert",
            str(cert),
            "--key",
            str(key),
        ) as peer,
    ):
        sock = accept_with_deadline(ls, time.monotonic() + 30, peer)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        set_socket_timeouts(sock, 30)
        stream = TlsStream(sock, client_context(cert, None), server=False, io="socket")
        stream.handshake()
        msg, buf = memoryview(b"NOOP\r\n"), memoryview(bytearray(64))
        lat = []
        with MachineWindow() as win:
            for _ in range(rounds):
                t = time.perf_counter()
                stream.sendall(msg)
                stream.recv_into(buf)
                lat.append(time.perf_counter() - t)
        stream.close()
        report = peer.finish()
    return Result(
        TLS_RTT,
        (pct(lat, 0.99) or 0) * 1000,
        "ms",
        note="p99 of a 6-byte TLS 1.3 echo, 2 processes",
        extra={"rtt_ms": summary(lat, 1000, 4), "peer": report, **win.report()},
    )


# --------------------------------------------------------------------------- helpers


def client(ctx: Context, ps: Portside, role: str, *args: str, name: str = "") -> Peer:
    """Start a ``bench._ftps`` client process against the platform."""
    return ctx.python_peer(
        "bench._ftps", role, "--target", str(ps.target_file), *args, name=name or f"ftps-{role}"
    )


def run_client(ctx: Context, ps: Portside, role: str, *args: str) -> dict[str, Any]:
    with client(ctx, ps, role, *args) as peer:
        return peer.finish(grace=ctx.remaining())


def wait_files(
    ctx: Context,
    ps: Portside,
    paths: list[str],
    *,
    owner: str = "",
    poll: float = 0.1,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Wait (bounded) until the files reached a final pipeline state; return their rows."""
    spec = ps.data_dir / f"paths-{time.monotonic_ns()}.json"
    spec.write_text(json.dumps(paths))
    limit = timeout if timeout is not None else ctx.remaining() - 10
    with ps.django_peer(
        ctx,
        "wait-files",
        "--paths-file",
        str(spec),
        "--owner",
        owner or ps.username,
        "--timeout",
        str(max(1.0, limit)),
        "--poll",
        str(poll),
    ) as peer:
        out = peer.finish(grace=ctx.remaining())
    spec.unlink()
    return out


def gw_cpu(ps: Portside) -> float:
    from bench.portside import cpu_seconds

    return cpu_seconds(ps.gateway_pids())


class StartLine:
    """Harness side of the client processes' start line (``ready`` ... ``go``)."""

    def __init__(self) -> None:
        self.ls = listen_loopback()
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.conns: list[socket.socket] = []

    def wait_ready(self, n: int, deadline: float, peers: list[Peer]) -> None:
        while len(self.conns) < n:
            conn = accept_with_deadline(self.ls, deadline, None)
            set_socket_timeouts(conn, max(1.0, deadline - time.monotonic()))
            self.conns.append(conn)
            for p in peers:
                if p.proc.poll() is not None:
                    raise RuntimeError(f"{p.name} exited before the start: {p.finish()}")
        for conn in self.conns:
            if conn.recv(16).strip() != b"ready":
                raise RuntimeError("a client process was not ready")

    def go(self) -> None:
        for conn in self.conns:
            conn.sendall(b"go\n")

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.ls.close()


class RssSampler(threading.Thread):
    """Sum of the gateway workers' VmRSS every 50 ms; peak per phase."""

    def __init__(self, ps: Portside) -> None:
        super().__init__(daemon=True)
        self.ps = ps
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.peak_kib = 0
        self.samples = 0

    def run(self) -> None:
        while not self.stop_event.wait(0.05):
            rss = status_kib(self.ps.gateway_pids(), "VmRSS")
            with self.lock:
                self.peak_kib = max(self.peak_kib, rss)
                self.samples += 1

    def phase(self) -> int:
        """Return the peak since the last call and start a new phase."""
        rss = status_kib(self.ps.gateway_pids(), "VmRSS")
        with self.lock:
            peak, self.peak_kib = self.peak_kib, rss
        return peak

    def stop(self) -> int:
        self.stop_event.set()
        if self.is_alive():
            self.join(5)
        return self.peak_kib


def reset_hwm(pids: list[int]) -> None:
    """Reset VmHWM (peak RSS) of the processes: ``echo 5 > /proc/PID/clear_refs``."""
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


class NoopProber(threading.Thread):
    """An idle logged-in session sending NOOP every 20 ms; records each round trip."""

    def __init__(self, ps: Portside) -> None:
        from bench._ftps import load_target, login

        super().__init__(daemon=True)
        self.ftp = login(load_target(str(ps.target_file)))
        self.stop_event = threading.Event()
        self.lat: list[float] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.wait(NOOP_INTERVAL_S):
                t = time.perf_counter()
                self.ftp.voidcmd("NOOP")
                self.lat.append(time.perf_counter() - t)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> dict[str, Any]:
        self.close()
        if self.error:
            raise RuntimeError(f"NOOP session failed: {self.error}")
        return summary(self.lat, 1000, 2)

    def close(self) -> None:
        from bench._ftps import quit_quietly

        self.stop_event.set()
        if self.is_alive():
            self.join(30)
        quit_quietly(self.ftp)


def _per_gb(cpu_s: float, nbytes: int) -> float:
    return cpu_s / (nbytes / 1e9)


def _check_reply(what: str, reply: str) -> None:
    if not reply.startswith("226"):
        raise RuntimeError(f"{what}: {reply}")


# --------------------------------------------------------------------------- single stream


@measurement(
    "ftps.single",
    produces=("ftps.upload", "ftps.upload.cpu", "ftps.download", "ftps.download.cpu"),
    timeout=900,
)
def single_stream(ctx: Context) -> list[Result]:
    ps = main_platform(ctx)
    size = ctx.size(SINGLE_BYTES)
    pids = ",".join(map(str, ps.gateway_pids()))
    path = "/single.bin"
    with MachineWindow() as up_win:
        up = run_client(
            ctx, ps, "upload", "--path", path, "--size", str(size), "--watch-pids", pids
        )
    _check_reply("upload", up["reply"])
    t0 = time.monotonic()
    ready = wait_files(ctx, ps, [path], poll=0.2)
    wait_s = time.monotonic() - t0
    row = ready["files"][0] if ready["files"] else {}
    if row.get("state") != "ready":
        raise RuntimeError(f"{path} did not become ready: {row or ready}")
    scan = row["steps"].get("scan", {})
    cached = _cached_share(row.get("storage_path"))
    with MachineWindow() as down_win:
        down = run_client(ctx, ps, "download", "--path", path, "--watch-pids", pids)
    _check_reply("download", down["reply"])
    if down["bytes"] != size:
        raise RuntimeError(f"downloaded {down['bytes']} of {size} bytes")
    pipe = {
        "wait_after_226_s": round(wait_s, 2),
        "received_to_ready_s": round(row["ready"] - row["received"], 2),
        "scan_s": round((scan.get("finished") or 0) - (scan.get("started") or 0), 2),
        "stored_file_cached_before_download": cached,
    }
    up_s = up["first_to_226_s"]
    down_s = down["first_to_last_s"]
    cipher = up["cipher"]
    return [
        Result(
            "ftps.upload",
            size / up_s / MB,
            "MB/s",
            limit=TLS_SEND,
            note=f"{size // MiB} MiB, first byte to 226 (incl. fsync), {cipher}",
            extra={"bytes": size, **up, **up_win.report()},
        ),
        Result(
            "ftps.upload.cpu",
            _per_gb(up["gateway_cpu_s"], size),
            "s/GB",
            limit=SEND_CPU,
            note="gateway workers' CPU per GB received",
            extra={"gateway_cpu_s": up["gateway_cpu_s"]},
        ),
        Result(
            "ftps.download",
            size / down_s / MB,
            "MB/s",
            limit=TLS_RECV,
            note=f"first to last byte; file ready {pipe['received_to_ready_s']} s "
            f"after upload (scan {pipe['scan_s']} s); "
            + ("page cache unknown" if cached is None
               else f"{cached:.0%} of the stored file in the page cache"),
            extra={"bytes": size, **down, "pipeline": pipe, **down_win.report()},
        ),
        Result(
            "ftps.download.cpu",
            _per_gb(down["gateway_cpu_s"], size),
            "s/GB",
            limit=RECV_CPU,
            note="gateway workers' CPU per GB sent",
            extra={"gateway_cpu_s": down["gateway_cpu_s"]},
        ),
    ]


def _cached_share(path: str | None) -> float | None:
    """Share of a stored file in the page cache (fincore), or None if unknown.

    The download reads what is not from the disk: the machine (a VM's memory reclaim) may
    have evicted part of the file while the pipeline scanned it.
    """
    if not path:
        return None
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    resident = resident_bytes(Path(path))
    return None if resident is None or not size else min(1.0, resident / size)


# --------------------------------------------------------------------------- small files


@measurement("ftps.small_files", unit="files/s", limit=SMALL_DISK, timeout=1800)
def small_files(ctx: Context) -> Result:
    ps = main_platform(ctx)
    count = ctx.pick(SMALL_FILES, 10)
    folder = f"/small-{count}"
    cpu0 = gw_cpu(ps)
    with MachineWindow() as win:
        out = run_client(
            ctx,
            ps,
            "upload-many",
            "--count",
            str(count),
            "--size",
            str(SMALL_SIZE),
            "--mkdir",
            folder,
        )
    cpu = gw_cpu(ps) - cpu0
    files = out["files"]
    # the pipeline runs beside the uploads (product default); let it drain before the next
    # measurement, and say how long the backlog took
    t0 = time.monotonic()
    done = wait_files(ctx, ps, [f["path"] for f in files], poll=0.25)
    states: dict[str, int] = {}
    for f in done["files"]:
        states[f["state"]] = states.get(f["state"], 0) + 1
    phases = {
        k: summary([f[k] for f in files], 1000, 2) for k in ("setup_s", "send_s", "wait_226_s")
    }
    return Result(
        "ftps.small_files",
        out["count"] / out["wall_s"],
        "files/s",
        note=f"{count} x 4 KiB STOR in one session; pipeline running beside",
        extra={
            "files": out["count"],
            "wall_s": round(out["wall_s"], 3),
            "phases_ms": phases,
            "gateway_cpu_s_per_file": round(cpu / count, 5),
            "pipeline_drain_after_s": round(time.monotonic() - t0, 2),
            "final_states": states,
            **win.report(),
        },
    )


# --------------------------------------------------------------------------- logins


def _login_stats(out: dict[str, Any]) -> dict[str, Any]:
    logins = out["logins"]
    return {
        "ok": out["ok"],
        "errors": out["error_count"],
        "first_errors": out["errors"],
        "wall_s": round(out["wall_s"], 3),
        "phases_ms": {
            k: summary([x[k] for x in logins], 1000, 1)
            for k in ("connect", "auth_tls", "user_pass", "pwd", "quit", "total")
        },
    }


@measurement(
    "ftps.logins",
    produces=(
        "ftps.logins.sequential",
        "ftps.logins.parallel",
        "ftps.logins.cached.sequential",
        "ftps.logins.cached.parallel",
    ),
    unit="/s",
    timeout=600,
)
def logins(ctx: Context) -> list[Result]:
    ps = main_platform(ctx)
    # Cached first: the platform's own gateway, warmed so each of its processes has verified
    # the password once (the cache is per process and lasts MFT_LOGIN_CACHE_SECONDS).
    warm = run_client(ctx, ps, "logins", "--threads", str(GATEWAY_WORKERS * 2), "--count", "2")
    if warm["error_count"]:
        raise RuntimeError(f"warm-up logins failed: {warm['errors']}")
    cached = _login_figures(
        ctx,
        ps,
        "ftps.logins.cached",
        "cached (verified credentials remembered per gateway process)",
        scale=10,  # ~13 ms each: 20 logins would be a quarter of a second of noise
    )
    uncached = _login_figures(
        ctx,
        uncached_gateway(ctx, ps),
        "ftps.logins",
        "uncached (a second gateway with MFT_LOGIN_CACHE_SECONDS=0)",
    )
    return [*uncached, *cached]


def _login_figures(
    ctx: Context, ps: Portside, prefix: str, what: str, scale: int = 1
) -> list[Result]:
    """Measure sequential and 20-parallel logins against one gateway (scale x as many)."""
    n_seq = ctx.pick(20 * scale, 5)
    clients, each = 20, ctx.pick(3 * scale, 1)
    with MachineWindow() as seq_win:
        seq = run_client(ctx, ps, "logins", "--threads", "1", "--count", str(n_seq))
    if seq["error_count"]:
        raise RuntimeError(f"sequential logins failed: {seq['errors']}")
    pids = ps.gateway_pids()
    prober = NoopProber(ps)
    sampler = RssSampler(ps)
    line = StartLine()
    try:
        with client(
            ctx,
            ps,
            "logins",
            "--threads",
            str(clients),
            "--count",
            str(each),
            "--sync",
            str(line.port),
        ) as peer:
            line.wait_ready(1, time.monotonic() + 60, [peer])
            base_kib = status_kib(pids, "VmRSS")
            reset_hwm(pids)
            sampler.start()
            prober.start()
            with MachineWindow() as par_win:
                line.go()
                par = peer.finish(grace=ctx.remaining())
        noop = prober.stop()
        peak_kib = sampler.stop()
        hwm_kib = status_kib(pids, "VmHWM")
    finally:
        line.close()
        prober.close()
        sampler.stop()
    if par["error_count"]:
        raise RuntimeError(f"parallel logins failed: {par['errors']}")
    return [
        Result(
            f"{prefix}.sequential",
            seq["ok"] / seq["wall_s"],
            "/s",
            limit=ARGON_SEQ,
            note=f"connect, AUTH TLS, USER/PASS, PWD, QUIT; {what}",
            extra={**_login_stats(seq), **seq_win.report()},
        ),
        Result(
            f"{prefix}.parallel",
            par["ok"] / par["wall_s"],
            "/s",
            limit=ARGON_PAR,
            note=f"{clients} clients at once, {what}; gateway RSS "
            f"+{(peak_kib - base_kib) // 1024} MB; idle NOOP p99 {noop['p99']} ms meanwhile",
            extra={
                **_login_stats(par),
                "noop_ms": noop,
                **par_win.report(),
                "gateway_rss_mb": {
                    "before": base_kib // 1024,
                    "peak": peak_kib // 1024,
                    "vmhwm_sum": hwm_kib // 1024,
                },
            },
        ),
    ]


# --------------------------------------------------------------------------- concurrency


def _split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _sessions_run(ctx: Context, ps: Portside, n: int, path: str, size: int) -> dict[str, Any]:
    """n sessions log in, then all download ``path`` at once; sample RSS and NOOP."""
    pids = ps.gateway_pids()
    prober = NoopProber(ps)
    sampler = RssSampler(ps)
    line = StartLine()
    nproc = max(2, min(4, os.cpu_count() or 2))
    peers: list[Peer] = []
    try:
        reset_hwm(pids)
        base_kib = status_kib(pids, "VmRSS")
        sampler.start()
        t_login = time.monotonic()
        for i, k in enumerate(_split(n, nproc)):
            peers.append(
                client(
                    ctx,
                    ps,
                    "sessions",
                    "--threads",
                    str(k),
                    "--path",
                    path,
                    "--sync",
                    str(line.port),
                    name=f"sessions-{i}",
                )
            )
        line.wait_ready(len(peers), time.monotonic() + ctx.remaining() - 30, peers)
        login_s = time.monotonic() - t_login
        login_peak = sampler.phase()
        login_hwm = status_kib(pids, "VmHWM")
        reset_hwm(pids)
        cpu0 = gw_cpu(ps)
        prober.start()
        with MachineWindow() as win:
            line.go()
            reports = [p.finish(grace=ctx.remaining()) for p in peers]
        cpu = gw_cpu(ps) - cpu0
        noop = prober.stop()
        peak = sampler.stop()
        hwm = status_kib(pids, "VmHWM")
    finally:
        line.close()
        for p in peers:
            p.close()
        prober.close()
        sampler.stop()
    sessions = [s for r in reports for s in r["sessions"]]
    errors = [s["error"] for s in sessions if "error" in s]
    short = [s for s in sessions if "error" not in s and s.get("bytes") != size]
    if errors or short:
        raise RuntimeError(
            f"{len(errors)} of {n} sessions failed ({errors[:3]}), {len(short)} short"
        )
    start = min(s["start"] for s in sessions)
    end = max(s["end"] for s in sessions)
    total = sum(s["bytes"] for s in sessions)
    per = sorted(s["end"] - s["start"] for s in sessions)
    return {
        "sessions": n,
        "client_processes": len(peers),
        "bytes": total,
        "wall_s": round(end - start, 3),
        "mb_s": total / (end - start) / MB,
        "session_s": {
            "min": round(per[0], 3),
            "p50": round(pct(per, 0.5) or 0, 3),
            "max": round(per[-1], 3),
        },
        "login_phase_s": round(login_s, 2),
        "gateway_cpu_s_per_gb": round(_per_gb(cpu, total), 3),
        "rss_mb": {
            "idle": base_kib // 1024,
            "login_peak": login_peak // 1024,
            "login_vmhwm_sum": login_hwm // 1024,
            "transfer_peak": peak // 1024,
            "transfer_vmhwm_sum": hwm // 1024,
        },
        "noop_ms": noop,
        **win.report(),
    }


def concurrency_counts(ctx: Context) -> tuple[int, int]:
    return ctx.pick((20, 200), (5, 20))


@measurement(
    "ftps.concurrent",
    produces=tuple(
        f"ftps.sessions{n}.{k}" for n in ("20", "200") for k in ("mbps", "rss", "noop_p99")
    ),
    timeout=900,
)
def concurrent(ctx: Context) -> list[Result]:
    ps = main_platform(ctx)
    size = ctx.size(CONC_BYTES, 4 * MiB)
    path = "/concurrent.bin"
    up = run_client(ctx, ps, "upload", "--path", path, "--size", str(size))
    _check_reply("upload", up["reply"])
    row = wait_files(ctx, ps, [path], poll=0.1)["files"][0]
    if row["state"] != "ready":
        raise RuntimeError(f"{path} did not become ready: {row}")
    out: list[Result] = []
    for label, n in zip(("20", "200"), concurrency_counts(ctx), strict=True):
        r = _sessions_run(ctx, ps, n, path, size)
        scaled = "" if str(n) == label else f" (quick: {n} sessions)"
        rss = r["rss_mb"]
        busy = {k: r[k] for k in ("background_cpu_frac",) if k in r}
        out += [
            Result(
                f"ftps.sessions{label}.mbps",
                r["mb_s"],
                "MB/s",
                limit=TLS_RECV,
                note=f"{n} x {size // MiB} MiB RETR at once, aggregate{scaled}",
                extra=r,
            ),
            Result(
                f"ftps.sessions{label}.rss",
                rss["transfer_peak"],
                "MB",
                limit=MEM_TOTAL,
                note=f"gateway workers' RSS sum, peak while transferring; during the "
                f"logins {rss['login_peak']} MB{scaled}",
                extra=busy,
            ),
            Result(
                f"ftps.sessions{label}.noop_p99",
                r["noop_ms"]["p99"],
                "ms",
                limit=TLS_RTT,
                note=f"idle session NOOP p99 (p50 {r['noop_ms']['p50']} ms, "
                f"{r['noop_ms']['n']} probes){scaled}",
                extra=busy,
            ),
        ]
    return out
