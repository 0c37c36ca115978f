"""FTPS client for the product measurements, also run as client processes.

:class:`BenchFTP` is ``ftplib.FTP_TLS`` as real clients (FileZilla, WinSCP, curl,
lftp) behave: TLS 1.3 on the control connection, ``PROT P``, passive, and every
data connection resumes the control connection's TLS session (Portside refuses
data connections that do not).  It also sets ``TCP_NODELAY`` on its sockets and
bounds every socket wait with kernel timeouts (the fds stay blocking, which is
what Python's ``ssl`` is fastest with).  Data moves in 1 MiB application
buffers; ``ssl`` still reads one 16 KiB TLS record per call.

``python -m bench._ftps ROLE --target FILE ...`` runs one client role and prints
one JSON line (``--target`` names the JSON written by :mod:`bench.portside`:
address, user, password, CA file).  Roles:

``download`` / ``upload``
    one file, one session; timings and the gateway's CPU read from
    ``/proc/<pid>/stat`` of ``--watch-pids`` right around the transfer.
``upload-many``
    ``--count`` files of ``--size`` bytes, one after another in one session
    (PASV, STOR, data, 226 each); per-file phases and the wall-clock time
    of each ``226``.
``logins``
    ``--threads`` clients each doing ``--count`` full logins
    (connect, AUTH TLS, USER/PASS, PWD, QUIT).
``sessions``
    ``--threads`` sessions log in, report ``ready`` to the harness on
    ``--sync`` and, on ``go``, all download ``--path`` at once.
"""

from __future__ import annotations

import argparse
import contextlib
import ftplib
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.core import set_socket_timeouts

BLOCK = 1024 * 1024
IO_TIMEOUT = 120.0


def client_context(cafile: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile)
    ctx.check_hostname = False  # the bench certificate is verified; its names are not
    return ctx


class BenchFTP(ftplib.FTP_TLS):
    """FTP_TLS that resumes the control session on data connections, like real clients."""

    io_timeout = IO_TIMEOUT

    def connect(
        self, host: str = "", port: int = 0, timeout: float = -999, source_address: Any = None
    ) -> str:
        welcome = super().connect(host, port, timeout, source_address)
        sock: Any = self.sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        set_socket_timeouts(sock, self.io_timeout)
        return welcome

    def ntransfercmd(self, cmd: str, rest: Any = None) -> tuple[Any, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        set_socket_timeouts(conn, self.io_timeout)
        control: Any = self.sock
        if getattr(self, "_prot_p", False):
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=control.session
            )
        return conn, size


def load_target(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def login(
    target: dict[str, Any],
    ctx: ssl.SSLContext | None = None,
    phases: dict[str, float] | None = None,
) -> BenchFTP:
    """Connect, AUTH TLS, USER/PASS, PBSZ/PROT P, TYPE I; fill ``phases`` (seconds)."""
    ctx = ctx or client_context(target["cafile"])
    ftp = BenchFTP(context=ctx)
    t0 = time.perf_counter()
    ftp.connect(target["host"], target["port"])
    t1 = time.perf_counter()
    ftp.auth()
    t2 = time.perf_counter()
    ftplib.FTP.login(ftp, target["user"], target["password"])
    t3 = time.perf_counter()
    ftp.prot_p()
    ftp.voidcmd("TYPE I")
    if phases is not None:
        phases.update(
            connect=t1 - t0, auth_tls=t2 - t1, user_pass=t3 - t2, prot_type=time.perf_counter() - t3
        )
    return ftp


def quit_quietly(ftp: ftplib.FTP) -> None:
    with contextlib.suppress(Exception):
        ftp.quit()
    with contextlib.suppress(Exception):
        ftp.close()


def _cpu(pids: list[int]) -> float:
    from bench.portside import cpu_seconds

    return cpu_seconds(pids)


def tls_facts(ftp: BenchFTP, conn: Any = None) -> dict[str, Any]:
    control: Any = ftp.sock
    out: dict[str, Any] = {"tls": control.version(), "cipher": control.cipher()[0]}
    if conn is not None:
        out["data_session_reused"] = conn.session_reused
    return out


# --------------------------------------------------------------------------- one file


def download(args: argparse.Namespace) -> dict[str, Any]:
    target = load_target(args.target)
    pids = [int(p) for p in args.watch_pids.split(",") if p]
    ftp = login(target)
    buf = memoryview(bytearray(BLOCK))
    got = 0
    cpu0, ccpu0 = _cpu(pids), time.process_time()
    t_cmd = time.perf_counter()
    conn, _ = ftp.ntransfercmd(f"RETR {args.path}")
    t_first = None
    recv_into = conn.recv_into
    while True:
        n = recv_into(buf, BLOCK)
        if not n:
            break
        if t_first is None:
            t_first = time.perf_counter()
        got += n
    t_last = time.perf_counter()
    facts = tls_facts(ftp, conn)
    with contextlib.suppress(OSError, ssl.SSLError):
        conn.unwrap()
    conn.close()
    reply = ftp.voidresp()
    t_226 = time.perf_counter()
    cpu1, ccpu1 = _cpu(pids), time.process_time()
    quit_quietly(ftp)
    return {
        "bytes": got,
        "cmd_to_first_s": (t_first or t_last) - t_cmd,
        "first_to_last_s": t_last - (t_first or t_last),
        "cmd_to_226_s": t_226 - t_cmd,
        "gateway_cpu_s": cpu1 - cpu0,
        "client_cpu_s": ccpu1 - ccpu0,
        "reply": reply,
        **facts,
    }


def upload(args: argparse.Namespace) -> dict[str, Any]:
    from bench.tlsutil import pattern_bytes

    target = load_target(args.target)
    pids = [int(p) for p in args.watch_pids.split(",") if p]
    ftp = login(target)
    block = memoryview(pattern_bytes(BLOCK))
    cpu0, ccpu0 = _cpu(pids), time.process_time()
    t_cmd = time.perf_counter()
    conn, _ = ftp.ntransfercmd(f"STOR {args.path}")
    facts = tls_facts(ftp, conn)
    t_first = time.perf_counter()
    sent = 0
    sendall = conn.sendall
    while sent < args.size:
        n = min(BLOCK, args.size - sent)
        sendall(block if n == BLOCK else block[:n])
        sent += n
    conn.unwrap()
    conn.close()
    t_sent = time.perf_counter()
    reply = ftp.voidresp()
    t_226 = time.perf_counter()
    cpu1, ccpu1 = _cpu(pids), time.process_time()
    quit_quietly(ftp)
    return {
        "bytes": sent,
        "cmd_to_first_s": t_first - t_cmd,
        "first_to_sent_s": t_sent - t_first,
        "sent_to_226_s": t_226 - t_sent,
        "first_to_226_s": t_226 - t_first,
        "gateway_cpu_s": cpu1 - cpu0,
        "client_cpu_s": ccpu1 - ccpu0,
        "reply": reply,
        "wall_226": time.time(),
        **facts,
    }


# --------------------------------------------------------------------------- many files


def upload_many(args: argparse.Namespace) -> dict[str, Any]:
    from bench.tlsutil import pattern_bytes

    target = load_target(args.target)
    ftp = login(target)
    if args.mkdir:
        ftp.voidcmd(f"MKD {args.mkdir}")
    payload = pattern_bytes(args.size)
    files: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for i in range(args.count):
        path = f"{args.mkdir or ''}/f{i:05d}.bin"
        # a different first block per file: the same content would be scanned by clamd from
        # its cache in some setups, and we measure the real work
        data = i.to_bytes(8, "big") + payload[8:]
        t0 = time.perf_counter()
        conn, _ = ftp.ntransfercmd(f"STOR {path}")
        t1 = time.perf_counter()
        conn.sendall(data)
        conn.unwrap()
        conn.close()
        t2 = time.perf_counter()
        reply = ftp.voidresp()
        t3 = time.perf_counter()
        if not reply.startswith("226"):
            raise RuntimeError(f"{path}: {reply}")
        files.append(
            {
                "path": path,
                "setup_s": t1 - t0,
                "send_s": t2 - t1,
                "wait_226_s": t3 - t2,
                "wall_226": time.time(),
            }
        )
    wall = time.perf_counter() - t_start
    quit_quietly(ftp)
    return {"count": len(files), "size": args.size, "wall_s": wall, "files": files}


# --------------------------------------------------------------------------- logins


def logins(args: argparse.Namespace) -> dict[str, Any]:
    target = load_target(args.target)
    ctx = client_context(target["cafile"])
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(args.threads + 1, timeout=60)

    def one() -> dict[str, float]:
        phases: dict[str, float] = {}
        t0 = time.perf_counter()
        ftp = BenchFTP(context=ctx)
        ftp.connect(target["host"], target["port"])
        t1 = time.perf_counter()
        ftp.auth()
        t2 = time.perf_counter()
        ftplib.FTP.login(ftp, target["user"], target["password"])
        t3 = time.perf_counter()
        ftp.pwd()
        t4 = time.perf_counter()
        ftp.quit()
        ftp.close()
        t5 = time.perf_counter()
        phases.update(
            connect=t1 - t0,
            auth_tls=t2 - t1,
            user_pass=t3 - t2,
            pwd=t4 - t3,
            quit=t5 - t4,
            total=t5 - t0,
        )
        return phases

    def worker() -> None:
        start.wait()
        for _ in range(args.count):
            try:
                r = one()
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    gate = Gate.connect(args.sync) if args.sync else None
    if gate:
        gate.ready_then_wait_go()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if gate:
        gate.done()
    return {
        "threads": args.threads,
        "per_thread": args.count,
        "ok": len(results),
        "errors": errors[:10],
        "error_count": len(errors),
        "wall_s": wall,
        "logins": results,
    }


# --------------------------------------------------------------------------- sessions


class Gate:
    """Client side of the harness's start line: send ``ready``, wait for ``go``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def connect(cls, port: str | int) -> Gate:
        sock = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
        sock.settimeout(None)
        set_socket_timeouts(sock, 600)
        return cls(sock)

    def ready_then_wait_go(self) -> None:
        self.sock.sendall(b"ready\n")
        got = b""
        while not got.endswith(b"\n"):
            chunk = self.sock.recv(16)
            if not chunk:
                raise ConnectionError("harness went away before go")
            got += chunk
        if got.strip() != b"go":
            raise RuntimeError(f"harness said {got!r}, not go")

    def done(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"done\n")
            self.sock.close()


def sessions(args: argparse.Namespace) -> dict[str, Any]:
    target = load_target(args.target)
    ctx = client_context(target["cafile"])
    n = args.threads
    logged_in = threading.Barrier(n + 1, timeout=IO_TIMEOUT * 2)
    go = threading.Event()
    out: list[dict[str, Any]] = [{} for _ in range(n)]

    def session(i: int) -> None:
        rec = out[i]
        ftp = None
        try:
            phases: dict[str, float] = {}
            ftp = login(target, ctx, phases)
            rec["login_s"] = sum(phases.values())
        except Exception as exc:
            rec["error"] = f"login: {type(exc).__name__}: {exc}"[:200]
        with contextlib.suppress(threading.BrokenBarrierError):
            logged_in.wait()
        if ftp is None:
            return
        go.wait(timeout=IO_TIMEOUT * 4)
        buf = memoryview(bytearray(BLOCK))
        try:
            rec["start"] = time.monotonic()
            conn, _ = ftp.ntransfercmd(f"RETR {args.path}")
            got = 0
            while k := conn.recv_into(buf, BLOCK):
                got += k
            rec["end"] = time.monotonic()
            with contextlib.suppress(OSError, ssl.SSLError):
                conn.unwrap()
            conn.close()
            rec["reply"] = ftp.voidresp()[:3]
            rec["bytes"] = got
        except Exception as exc:
            rec["error"] = f"transfer: {type(exc).__name__}: {exc}"[:200]
        finally:
            quit_quietly(ftp)

    threading.stack_size(512 * 1024)
    threads = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    logged_in.wait()
    gate = Gate.connect(args.sync)
    gate.ready_then_wait_go()
    go.set()
    for t in threads:
        t.join(timeout=IO_TIMEOUT * 4)
    gate.done()
    return {"sessions": out}


# --------------------------------------------------------------------------- main


ROLES = {
    "download": download,
    "upload": upload,
    "upload-many": upload_many,
    "logins": logins,
    "sessions": sessions,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench._ftps")
    ap.add_argument("role", choices=sorted(ROLES))
    ap.add_argument("--target", required=True)
    ap.add_argument("--path", default="")
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mkdir", default="")
    ap.add_argument("--watch-pids", default="")
    ap.add_argument("--sync", default="")
    args = ap.parse_args(argv)
    signal.alarm(max(1, int(os.environ.get("BENCH_PEER_DEADLINE", "600"))))
    out = ROLES[args.role](args)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
