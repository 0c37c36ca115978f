"""Pipeline figures: time from a small upload's ``226`` to the file being ``ready``.

100 files of 4 KiB are uploaded one after another in one FTPS session; for each,
the client notes the wall-clock time of the ``226`` and the worker records
``ready_at`` when the last step (scan -> DLP -> finish) commits.  The latency is
``ready_at - 226``, read back from the StoredFile rows by :mod:`bench._django`
(the same ``MFT_DATA_DIR`` and database).  On the run's platform (embedded
filesystem broker) and, when ``BENCH_REDIS=redis://host:port/db`` is given, on a
second platform whose gateway and worker use that Redis.

Limit ``clamd.instream.4k``: median time of the one step that must happen, a
4 KiB INSTREAM scan sent straight to the same clamd from the harness.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Any

from bench.core import LIMIT, Context, KiB, Result, measurement
from bench.ftps import run_client, wait_files
from bench.portside import MachineWindow, Portside, clamd, main_platform, pct, redis_platform
from bench.portside import summary as stats

CLAMD_4K = "clamd.instream.4k"
FILES = 100
SIZE = 4 * KiB
REDIS = os.environ.get("BENCH_REDIS", "").strip()


def _instream(address: str, data: bytes) -> str:
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"zINSTREAM\0" + struct.pack(">I", len(data)) + data + b"\0\0\0\0")
        reply = b""
        while not reply.endswith(b"\0"):
            part = s.recv(4096)
            if not part:
                break
            reply += part
    return reply.rstrip(b"\0").decode()


@measurement(CLAMD_4K, kind=LIMIT, unit="ms", timeout=120)
def clamd_small(ctx: Context) -> Result:
    address = clamd(ctx).address
    n = ctx.pick(200, 50)
    payload = os.urandom(SIZE)
    lat = []
    with MachineWindow() as win:
        for i in range(n):
            data = i.to_bytes(8, "big") + payload[8:]  # distinct content: no verdict cache
            t = time.perf_counter()
            reply = _instream(address, data)
            lat.append(time.perf_counter() - t)
            if not reply.endswith("OK"):
                raise RuntimeError(f"clamd: {reply}")
    return Result(
        CLAMD_4K,
        (pct(lat, 0.5) or 0) * 1000,
        "ms",
        note="median INSTREAM of 4 KiB, harness -> clamd",
        extra={"scans": n, "ms": stats(lat, 1000, 3), **win.report()},
    )


def _latencies(ps: Portside, ctx: Context, label: str) -> tuple[list[float], dict[str, Any]]:
    n = ctx.pick(FILES, 10)
    folder = f"/pipeline-{label}"
    with MachineWindow() as win:
        up = run_client(
            ctx, ps, "upload-many", "--count", str(n), "--size", str(SIZE), "--mkdir", folder
        )
        done = wait_files(ctx, ps, [f["path"] for f in up["files"]], poll=0.05)
    at_226 = {f["path"]: f["wall_226"] for f in up["files"]}
    lat: list[float] = []
    queue: list[float] = []
    scan: list[float] = []
    tail: list[float] = []
    states: dict[str, int] = {}
    for row in done["files"]:
        states[row["state"]] = states.get(row["state"], 0) + 1
        if row["state"] != "ready":
            continue
        lat.append(row["ready"] - at_226[row["path"]])
        steps = row["steps"]
        queue.append(steps["scan"]["started"] - row["received"])  # recorded -> a worker took it
        scan.append(steps["scan"]["finished"] - steps["scan"]["started"])
        tail.append(row["ready"] - steps["scan"]["finished"])
    if len(lat) != n:
        raise RuntimeError(f"{n - len(lat)} of {n} files not ready: {states}")
    first_226 = min(at_226.values())
    last_ready = max(row["ready"] for row in done["files"])
    extra = {
        "files": n,
        "upload_s": round(up["wall_s"], 3),
        "upload_files_per_s": round(n / up["wall_s"], 1),
        "pipeline_files_per_s": round(n / max(1e-3, last_ready - first_226), 1),
        "ready_after_226_ms": stats(lat, 1000, 1),
        "breakdown_p50_ms": {
            "queued": round((pct(queue, 0.5) or 0) * 1000, 1),
            "scan": round((pct(scan, 0.5) or 0) * 1000, 1),
            "dlp_and_finish": round((pct(tail, 0.5) or 0) * 1000, 1),
        },
        "broker": ps.broker.split("://")[0],
        **win.report(),
    }
    return lat, extra


def _results(prefix: str, lat: list[float], extra: dict[str, Any], note: str) -> list[Result]:
    p50, p95 = pct(lat, 0.5) or 0, pct(lat, 0.95) or 0
    return [
        Result(f"{prefix}.p50", p50 * 1000, "ms", limit=CLAMD_4K, note=note, extra=extra),
        Result(f"{prefix}.p95", p95 * 1000, "ms", limit=CLAMD_4K, note=note),
    ]


@measurement(
    "pipeline.embedded",
    produces=("pipeline.embedded.p50", "pipeline.embedded.p95"),
    unit="ms",
    timeout=900,
)
def embedded(ctx: Context) -> list[Result]:
    ps = main_platform(ctx)
    lat, extra = _latencies(ps, ctx, "embedded")
    q = extra["breakdown_p50_ms"]
    return _results(
        "pipeline.embedded",
        lat,
        extra,
        f"226 -> ready, filesystem broker; p50 queued {q['queued']} ms, scan {q['scan']} ms",
    )


if REDIS:

    @measurement(
        "pipeline.redis",
        produces=("pipeline.redis.p50", "pipeline.redis.p95"),
        unit="ms",
        timeout=900,
    )
    def redis(ctx: Context) -> list[Result]:
        ps = redis_platform(ctx, REDIS)
        lat, extra = _latencies(ps, ctx, "redis")
        q = extra["breakdown_p50_ms"]
        return _results(
            "pipeline.redis",
            lat,
            extra,
            f"226 -> ready, Redis broker; p50 queued {q['queued']} ms, scan {q['scan']} ms",
        )
