"""This machine's own limits, measured in the same run as the figures.

* ``tls13.loopback.send`` / ``.recv``: a plain TLS 1.3 stream (pyOpenSSL, the
  gateway's TLS library) between the harness and a peer process over
  loopback; the harness is the TLS client, the peer the server.  ``send`` =
  harness -> peer, ``recv`` = peer -> harness.
* ``cipher.aes256gcm.openssl_speed``: ``openssl speed -evp aes-256-gcm``, one
  core, largest block size.
* ``cipher.aes256gcm.pyca``: AES-256-GCM through ``cryptography`` (the OpenSSL
  build pyOpenSSL is linked against), one core, 256 KiB messages.
* ``tcp.loopback``: one plain TCP stream, harness -> peer process.
* ``disk.write_fsync`` / ``disk.read``: a file in the run's scratch dir
  (same filesystem as the repo when possible), page cache dropped before the
  read when we can.
* ``mem.fault_in`` / ``.reused``: CPU seconds per GB to fault in fresh memory
  (a new anonymous mapping written once per page), then again right after
  unmapping it. Every byte an upload writes lands in a page-cache page the
  kernel must find first; on a VM that hands freed memory back to its host
  (free page reporting, DAMON) the first touch costs several times the second.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import platform
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.core import (
    LIMIT,
    Context,
    CpuWindow,
    GiB,
    KiB,
    MiB,
    Progress,
    Result,
    accept_with_deadline,
    env_int,
    facts,
    listen_loopback,
    mb_per_s,
    measurement,
    scratch_file,
    set_socket_timeouts,
)
from bench.tlsutil import (
    DEFAULT_CIPHERSUITE,
    RawStream,
    TlsStream,
    client_context,
    io_for,
    make_cert,
    pattern_bytes,
    pump_recv,
    pump_send,
    recv_exact,
)

TLS_SEND = "tls13.loopback.send"
TLS_RECV = "tls13.loopback.recv"
OPENSSL_SPEED = "cipher.aes256gcm.openssl_speed"
PYCA_GCM = "cipher.aes256gcm.pyca"
TCP = "tcp.loopback"
DISK_WRITE = "disk.write_fsync"
DISK_READ = "disk.read"
MEM_FAULT = "mem.fault_in"
MEM_FAULT_REUSED = "mem.fault_in.reused"

STREAM_BYTES = 1 * GiB
DISK_BYTES = 1 * GiB
IO_BUF = 1 * MiB


def _tls_settings() -> dict[str, Any]:
    return {
        "io": os.environ.get("BENCH_TLS_IO", "membio"),
        "buf": env_int("BENCH_TLS_BUF", IO_BUF),
        "ciphersuite": os.environ.get("BENCH_TLS_CIPHERSUITE", DEFAULT_CIPHERSUITE),
        "sockbuf": env_int("BENCH_SOCKBUF", 0),
    }


def _bench_cert(ctx: Context) -> tuple[Path, Path]:
    def factory(_ctx: Context):
        return contextlib.nullcontext(make_cert(ctx.workdir))

    return ctx.shared("bench-cert", factory)


# --------------------------------------------------------------------------- streams


def _loopback_stream(
    ctx: Context, name: str, *, tls: bool, direction: str, limit: str | None = None
) -> Result:
    """One timed stream between the harness and a peer process.

    ``direction`` is ``send`` (harness -> peer) or ``recv`` (peer -> harness).
    The clock runs from the first payload byte to the last one being
    acknowledged (send) / received (recv); connect and handshake are untimed.
    """
    total = ctx.size(STREAM_BYTES)
    s = _tls_settings()
    bufsize = s["buf"]
    peer_role = ("tls" if tls else "tcp") + ("-sink" if direction == "send" else "-source")
    my_io = io_for(s["io"], sending=direction == "send")
    peer_io = io_for(s["io"], sending=direction != "send")
    args = ["--bytes", str(total), "--buf", str(bufsize), "--sockbuf", str(s["sockbuf"])]
    if tls:
        cert, key = _bench_cert(ctx)
        args += ["--cert", str(cert), "--key", str(key)]
        args += ["--ciphersuite", s["ciphersuite"], "--io", peer_io]

    ls = listen_loopback()
    port = ls.getsockname()[1]
    with ls, ctx.python_peer("bench.peer", peer_role, "--port", str(port), *args) as peer:
        sock = accept_with_deadline(ls, min(ctx.deadline, time.monotonic() + 60), peer)
        set_socket_timeouts(sock, ctx.remaining(cap=120))
        if s["sockbuf"]:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, s["sockbuf"])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, s["sockbuf"])
        if tls:
            cert, _ = _bench_cert(ctx)
            tls_stream = TlsStream(
                sock, client_context(cert, s["ciphersuite"] or None), server=False, io=my_io
            )
            tls_stream.handshake()
            stream: RawStream | TlsStream = tls_stream
        else:
            stream = RawStream(sock)

        progress = Progress(total)
        if direction == "send":
            with CpuWindow() as win:
                progress.start()
                pump_send(stream, total, bufsize, progress)
                recv_exact(stream, 1)
        else:
            stream.sendall(memoryview(b"g"))
            with CpuWindow() as win:
                progress.start()
                pump_recv(stream, total, bufsize, progress)
            stream.sendall(memoryview(b"k"))
        info = stream.info()
        report = peer.finish()
        stream.close()

    extra: dict[str, Any] = {
        "bytes": total,
        "buffer_bytes": bufsize,
        "direction": "harness->peer" if direction == "send" else "peer->harness",
        **info,
        **win.report(peer_cpu_s=float(report.get("cpu_s", 0.0))),
        **progress.stats(),
        "peer": report,
    }
    note = ""
    if tls:
        extra["ciphersuite_requested"] = s["ciphersuite"] or "(negotiated)"
        extra["tls_io_setting"] = s["io"]
        send_io, recv_io = (my_io, peer_io) if direction == "send" else (peer_io, my_io)
        note = f"{info.get('cipher')}, io send={send_io}/recv={recv_io}"
    return Result(name, mb_per_s(total, win.wall_s), "MB/s", limit=limit, note=note, extra=extra)


@measurement(TLS_SEND, kind=LIMIT, timeout=300)
def tls_send(ctx: Context) -> Result:
    return _loopback_stream(ctx, TLS_SEND, tls=True, direction="send", limit=PYCA_GCM)


@measurement(TLS_RECV, kind=LIMIT, timeout=300)
def tls_recv(ctx: Context) -> Result:
    return _loopback_stream(ctx, TLS_RECV, tls=True, direction="recv", limit=PYCA_GCM)


@measurement(TCP, kind=LIMIT, timeout=300)
def tcp_loopback(ctx: Context) -> Result:
    return _loopback_stream(ctx, TCP, tls=False, direction="send")


# --------------------------------------------------------------------------- cipher


_SPEED_HEADER = re.compile(r"^type\s+(.*)$")
_SPEED_SIZE = re.compile(r"(\d+)\s*bytes")


def parse_openssl_speed(text: str) -> tuple[int, float, dict[int, float]]:
    """Return (largest block size, its bytes/s, {size: bytes/s}) from ``openssl speed``.

    openssl prints "1000s of bytes per second": a trailing ``k`` means x1000.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _SPEED_HEADER.match(line.strip())
        if not m:
            continue
        sizes = [int(x) for x in _SPEED_SIZE.findall(m.group(1))]
        if not sizes:
            continue
        for row in lines[i + 1 :]:
            toks = row.split()
            vals = toks[-len(sizes) :]
            if len(toks) > len(sizes) and all(v.endswith("k") for v in vals):
                rates = {sz: float(v[:-1]) * 1000.0 for sz, v in zip(sizes, vals, strict=True)}
                big = max(sizes)
                return big, rates[big], rates
    raise ValueError(f"could not parse openssl speed output: {text[-400:]!r}")


@measurement(OPENSSL_SPEED, kind=LIMIT, timeout=300)
def openssl_speed(ctx: Context) -> Result:
    exe = shutil.which("openssl")
    if exe is None:
        raise FileNotFoundError("openssl CLI not found on PATH")
    cmd = [exe, "speed", "-evp", "aes-256-gcm"]
    if ctx.quick:  # one second on the one block size we report (not six sizes)
        cmd += ["-seconds", "1", "-bytes", "16384"]
    with CpuWindow() as win:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=ctx.remaining(cap=240))
    if proc.returncode != 0:
        raise RuntimeError(f"openssl speed exited {proc.returncode}: {proc.stderr[-400:]}")
    block, rate, rates = parse_openssl_speed(proc.stdout)
    version = subprocess.run(
        [exe, "version"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    return Result(
        OPENSSL_SPEED,
        rate / 1e6,
        "MB/s",
        note=f"{block} B blocks, 1 core",
        extra={
            "cmd": " ".join(cmd),
            "openssl_cli_version": version,
            "block_bytes": block,
            "mb_s_by_block": {str(k): round(v / 1e6, 1) for k, v in rates.items()},
            **win.report(),
        },
    )


@measurement(PYCA_GCM, kind=LIMIT, timeout=300)
def pyca_gcm(ctx: Context) -> Result:
    from cryptography.hazmat.backends.openssl.backend import backend
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    total = ctx.size(STREAM_BYTES)
    chunk = 256 * KiB
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    data = pattern_bytes(chunk)
    out = bytearray(chunk + 16)
    nonce = bytearray(12)
    done = 0
    with CpuWindow() as win:
        for i in range(total // chunk):
            nonce[:8] = i.to_bytes(8, "little")
            aead.encrypt_into(bytes(nonce), data, None, out)
            done += chunk
    return Result(
        PYCA_GCM,
        mb_per_s(done, win.wall_s),
        "MB/s",
        limit=OPENSSL_SPEED,
        note=f"encrypt, {chunk // KiB} KiB msgs, 1 core",
        extra={
            "bytes": done,
            "message_bytes": chunk,
            "openssl": backend.openssl_version_text(),
            **win.report(),
        },
    )


# --------------------------------------------------------------------------- disk


def _mount_of(path: Path) -> dict[str, str]:
    best: tuple[str, str, str] = ("", "", "")
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                src, mnt, fstype = line.split()[:3]
                if (str(path) + "/").startswith(mnt.rstrip("/") + "/") and len(mnt) >= len(best[1]):
                    best = (src, mnt, fstype)
    except OSError:
        pass
    return {"device": best[0], "mountpoint": best[1], "fstype": best[2]}


def resident_bytes(path: Path) -> int | None:
    exe = shutil.which("fincore")
    if exe is None:
        return None
    proc = subprocess.run(
        [exe, "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    try:
        return int(proc.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def _drop_file_cache(path: Path, size: int) -> dict[str, Any]:
    """Evict ``path`` from the page cache; say how (and whether it worked)."""
    info: dict[str, Any] = {}
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        info["cache_drop"] = "posix_fadvise(DONTNEED)"
    except OSError as exc:
        info["cache_drop_fadvise_error"] = str(exc)
    finally:
        os.close(fd)
    resident = resident_bytes(path)
    if (resident is None or resident > size // 100) and os.access(
        "/proc/sys/vm/drop_caches", os.W_OK
    ):
        try:
            with open("/proc/sys/vm/drop_caches", "w") as fh:
                fh.write("1\n")
            info["cache_drop"] = "drop_caches=1"
            resident = resident_bytes(path)
        except OSError as exc:
            info["drop_caches_error"] = str(exc)
    info["resident_bytes_before_read"] = resident
    if resident is None:
        info["read_cached"] = "unknown (no fincore)"
    else:
        info["read_cached"] = resident > size // 100
    return info


@measurement("disk", kind=LIMIT, produces=(DISK_WRITE, DISK_READ), timeout=600)
def disk(ctx: Context) -> list[Result]:
    directory = ctx.workdir
    size = ctx.size(DISK_BYTES)
    free = shutil.disk_usage(directory).free
    if free < 2 * size + 256 * MiB:
        raise OSError(f"only {free} bytes free in {directory}; need {2 * size + 256 * MiB}")
    where = {
        "path": str(directory),
        "same_fs_as_repo": os.stat(directory).st_dev == os.stat(Path(__file__)).st_dev,
        **_mount_of(directory),
    }
    buf = memoryview(bytearray(pattern_bytes(IO_BUF)))
    with scratch_file(directory, f"disk-{os.getpid()}.bin") as path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with CpuWindow() as wwin:
                t0 = time.perf_counter()
                written = 0
                while written < size:
                    view = buf[: min(IO_BUF, size - written)]
                    while view:  # os.write may be partial
                        n = os.write(fd, view)
                        view = view[n:]
                        written += n
                t_buffered = time.perf_counter() - t0
                os.fsync(fd)
        finally:
            os.close(fd)
        cache = _drop_file_cache(path, size)

        rbuf = memoryview(bytearray(IO_BUF))
        with open(path, "rb", buffering=0) as fh:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            with CpuWindow() as rwin:
                got = 0
                while got < size:
                    n = fh.readinto(rbuf)
                    if not n:
                        raise OSError(f"short read: {got} of {size}")
                    got += n

    write = Result(
        DISK_WRITE,
        mb_per_s(size, wwin.wall_s),
        "MB/s",
        note="incl. fsync",
        extra={
            "bytes": size,
            "write_bytes_per_call": IO_BUF,
            "before_fsync_s": round(t_buffered, 4),
            **where,
            **wwin.report(),
        },
    )
    cached = cache.get("read_cached")
    read = Result(
        DISK_READ,
        mb_per_s(size, rwin.wall_s),
        "MB/s",
        note=(
            "page cache dropped"
            if cached is False
            else "CACHED read (page cache not dropped)"
            if cached is True
            else "cache state unknown"
        ),
        extra={"bytes": size, "read_bytes_per_call": IO_BUF, **cache, **where, **rwin.report()},
    )
    return [write, read]


def _fault_in(size: int) -> tuple[float, float]:
    """Map `size` fresh bytes, write them once (one fault per page), unmap; return
    (wall s, process CPU s)."""
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        address = ctypes.addressof(ctypes.c_char.from_buffer(region))
        cpu0, t0 = time.process_time(), time.perf_counter()
        ctypes.memset(address, 1, size)
        return time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        region.close()  # the pages go back to the kernel for the second run


@measurement("mem.fault_in", kind=LIMIT, produces=(MEM_FAULT, MEM_FAULT_REUSED),
             unit="s/GB", timeout=120)
def fault_in(ctx: Context) -> list[Result]:
    size = ctx.size(DISK_BYTES)
    first_wall, first_cpu = _fault_in(size)
    again_wall, again_cpu = _fault_in(size)
    per_gb = 1e9 / size  # s per decimal GB, as ftps.*.cpu
    return [
        Result(MEM_FAULT, first_cpu * per_gb, "s/GB",
               note=f"{size // MiB} MiB of new anonymous memory written once; CPU per GB",
               extra={"bytes": size, "wall_s": round(first_wall, 3)}),
        Result(MEM_FAULT_REUSED, again_cpu * per_gb, "s/GB",
               note="the same again at once, in pages the kernel just freed",
               extra={"bytes": size, "wall_s": round(again_wall, 3)}),
    ]


# --------------------------------------------------------------------------- facts


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    wanted = {"aes", "vaes", "pclmulqdq", "vpclmulqdq", "avx2", "avx512f", "sha_ni"}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return sorted(wanted & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def _mem_total_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@facts
def machine_facts() -> dict[str, Any]:
    import cryptography
    import OpenSSL
    from OpenSSL import SSL

    exe = shutil.which("openssl")
    cli = None
    if exe:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            cli = subprocess.run(
                [exe, "version"], capture_output=True, text=True, timeout=30
            ).stdout.strip()
    return {
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)),
            "cpu_model": _cpu_model(),
            "cpu_flags": _cpu_flags(),
            "mem_total_bytes": _mem_total_bytes(),
            "kernel": platform.release(),
            "hostname": platform.node(),
            "loadavg_at_start": os.getloadavg(),
        },
        "versions": {
            "python": sys.version.split()[0],
            "python_ssl_openssl": ssl.OPENSSL_VERSION,
            "pyopenssl": OpenSSL.__version__,
            "pyopenssl_openssl": SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode(),
            "cryptography": cryptography.__version__,
            "openssl_cli": cli,
        },
    }
