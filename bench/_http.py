"""HTTP load client: ``python -m bench._http --port P --path /x --clients N --seconds S``.

N threads, each with its own keep-alive ``http.client`` connection, send GET
requests back to back for S seconds (after a short untimed warm-up) and record
each latency.  ``--post-json TEMPLATE`` sends POSTs instead, each with the template's JSON
after ``{client}``, ``{n}`` and ``{run}`` are filled in (client index, its request count,
a per-run id), so every request creates a distinct object.
``--token-file`` adds ``Authorization: Bearer <token>``; with several tokens in
the file (one a line), client ``i`` uses token ``i mod n``, like separate
integrations each holding its own token (the API throttles per token).  Prints
one JSON line: requests, errors, wall time, latencies in ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench._http")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--token-file", default="")
    ap.add_argument("--post-json", default="")
    args = ap.parse_args(argv)
    run_id = os.urandom(4).hex()
    signal.alarm(max(1, int(os.environ.get("BENCH_PEER_DEADLINE", "300"))))
    tokens = Path(args.token_file).read_text().split() if args.token_file else []
    lat: list[float] = []
    errors: list[str] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(args.clients + 1)
    t_begin = t_end = 0.0

    def client(i: int) -> None:
        headers = {"Accept": "application/json"}
        if args.post_json:
            headers["Content-Type"] = "application/json"
        if tokens:
            headers["Authorization"] = f"Bearer {tokens[i % len(tokens)]}"
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
        mine: list[float] = []
        codes: dict[int, int] = {}
        sent = 0
        start.wait()
        while True:
            t = time.perf_counter()
            if t >= t_end:
                break
            try:
                if args.post_json:
                    body = (args.post_json.replace("{client}", str(i))
                            .replace("{n}", str(sent)).replace("{run}", run_id))
                    sent += 1
                    conn.request("POST", args.path, body=body.encode(), headers=headers)
                else:
                    conn.request("GET", args.path, headers=headers)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
                continue
            done = time.perf_counter()
            codes[resp.status] = codes.get(resp.status, 0) + 1
            if t >= t_begin:
                mine.append(done - t)
        conn.close()
        with lock:
            lat.extend(mine)
            for k, v in codes.items():
                statuses[k] = statuses.get(k, 0) + v

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()
    now = time.perf_counter()
    t_begin = now + args.warmup
    t_end = t_begin + args.seconds
    start.wait()
    for t in threads:
        t.join(args.warmup + args.seconds + 120)
    lat.sort()

    def q(p: float) -> float | None:
        return 1000 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

    out: dict[str, Any] = {
        "requests": len(lat),
        "seconds": args.seconds,
        "tokens": len(tokens),
        "rps": len(lat) / args.seconds,
        "errors": len(errors),
        "first_errors": errors[:5],
        "statuses": statuses,
        "p50_ms": q(0.5),
        "p95_ms": q(0.95),
        "p99_ms": q(0.99),
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
