"""The other end of a loopback measurement, run as ``python -m bench.peer``.

It connects to the harness, optionally plays TLS *server* (as the gateway
would), moves the bytes and prints one JSON report line on stdout.  It kills
itself with SIGALRM after ``BENCH_PEER_DEADLINE`` seconds whatever happens.

Protocol after the (untimed) handshake, ``N`` = ``--bytes``:

* ``*-sink``:   receive N bytes, send 1 ack byte.
* ``*-source``: receive 1 go byte, send N bytes, receive 1 ack byte.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from bench.core import set_socket_timeouts
from bench.tlsutil import (
    RawStream,
    TlsStream,
    pump_recv,
    pump_send,
    recv_exact,
    server_context,
)

ROLES = ("tcp-sink", "tcp-source", "tls-sink", "tls-source")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.peer")
    ap.add_argument("role", choices=ROLES)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bytes", type=int, required=True)
    ap.add_argument("--buf", type=int, default=1 << 20)
    ap.add_argument("--cert", type=Path)
    ap.add_argument("--key", type=Path)
    ap.add_argument("--ciphersuite", default="")
    ap.add_argument("--io", default="membio")
    ap.add_argument("--sockbuf", type=int, default=0)
    args = ap.parse_args(argv)

    deadline = int(os.environ.get("BENCH_PEER_DEADLINE", "600"))
    signal.alarm(max(1, deadline))  # default SIGALRM action terminates us

    sock = socket.create_connection(("127.0.0.1", args.port), timeout=min(30, deadline))
    sock.settimeout(None)
    set_socket_timeouts(sock, deadline)
    if args.sockbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, args.sockbuf)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.sockbuf)

    if args.role.startswith("tls-"):
        if args.cert is None or args.key is None:
            ap.error("tls roles need --cert and --key")
        ctx = server_context(args.cert, args.key, args.ciphersuite or None)
        tls_stream = TlsStream(sock, ctx, server=True, io=args.io)
        tls_stream.handshake()
        stream: RawStream | TlsStream = tls_stream
    else:
        stream = RawStream(sock)

    c0 = time.process_time()
    t0 = time.perf_counter()
    if args.role.endswith("-sink"):
        moved = pump_recv(stream, args.bytes, args.buf)
        stream.sendall(memoryview(b"k"))
    else:
        recv_exact(stream, 1)
        moved = pump_send(stream, args.bytes, args.buf)
        recv_exact(stream, 1)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0

    report = {"role": args.role, "bytes": moved, "cpu_s": cpu, "wall_s": wall}
    report.update(stream.info())
    stream.close()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
