"""TLS echo peer for the round-trip limit: ``python -m bench._echo --port P --cert C --key K``.

Connects to the harness, plays TLS 1.3 server (pyOpenSSL, OpenSSL driving the
socket as the gateway does), then echoes every line until EOF.  Prints one JSON
line with its CPU time.  Dies by SIGALRM after ``BENCH_PEER_DEADLINE`` seconds.
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
from bench.tlsutil import TlsStream, server_context


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench._echo")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", type=Path, required=True)
    ap.add_argument("--key", type=Path, required=True)
    args = ap.parse_args(argv)
    deadline = int(os.environ.get("BENCH_PEER_DEADLINE", "120"))
    signal.alarm(max(1, deadline))
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=30)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    set_socket_timeouts(sock, deadline)
    stream = TlsStream(sock, server_context(args.cert, args.key, None), server=True, io="socket")
    stream.handshake()
    buf = memoryview(bytearray(4096))
    c0 = time.process_time()
    rounds = 0
    while True:
        n = stream.recv_into(buf)
        if not n:
            break
        stream.sendall(buf[:n])
        rounds += 1
    stream.close()
    print(json.dumps({"rounds": rounds, "cpu_s": time.process_time() - c0}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
