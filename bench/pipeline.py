"""Pipeline figures: time from a small upload's ``226`` to the file being ``ready``
and to its delivery at a partner's FTPS server.

100 files of 4 KiB are uploaded one after another in one FTPS session; for each,
the client notes the wall-clock time of the ``226`` and the worker records
``ready_at`` when the last step (decrypt -> scan -> DLP -> finish) commits.  The
latency is ``ready_at - 226``, read back from the StoredFile rows by
:mod:`bench._django` (the same ``MFT_DATA_DIR`` and database).  An on-arrival route
pushes every ready file to a partner's FTPS server on loopback (stock pyftpdlib TLS,
:func:`bench.portside.partner_server`) through the ``outbound`` worker;
``.delivered`` is the Delivery row's ``finished_at`` (sent and verified) - ``226``.
On the run's platform (embedded filesystem broker) and, when
``BENCH_REDIS=redis://host:port/db`` is given, on a second platform whose gateway
and workers use that Redis.  ``worker_cpu_ms_per_file`` is the pipeline worker's
CPU (main process and pool) from the first upload to the last delivery, per file.

Limit ``clamd.instream.4k``: median time of the one step that must happen, a
4 KiB INSTREAM scan sent straight to the same clamd from the harness.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from typing import Any

from bench.core import LIMIT, Context, KiB, Result, measurement
from bench.ftps import run_client, wait_files
from bench.portside import (
    MachineWindow,
    Portside,
    clamd,
    cpu_seconds,
    main_platform,
    partner_server,
    pct,
    redis_platform,
    worker_pids,
)
from bench.portside import summary as stats

CLAMD_4K = "clamd.instream.4k"
FILES = 100
SIZE = 4 * KiB
REDIS = os.environ.get("BENCH_REDIS", "").strip()
# The partner endpoint's connection limit: high enough never to apply (see _django).
PARTNER_CONNECTIONS = 100


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


def _route_to_partner(ctx: Context, ps: Portside, folder: str) -> None:
    """Give the platform an on-arrival route from ``folder`` to its partner's server."""
    partner = partner_server(ctx, ps)
    with ps.django_peer(
        ctx,
        "partner-route",
        "--partner-file",
        str(partner.info_file),
        "--folder",
        folder,
        "--max-connections",
        str(PARTNER_CONNECTIONS),
    ) as peer:
        peer.finish(grace=ctx.remaining())


def _wait_delivered(ctx: Context, ps: Portside, paths: list[str]) -> dict[str, Any]:
    spec = ps.data_dir / f"delivered-{time.monotonic_ns()}.json"
    spec.write_text(json.dumps(paths))
    with ps.django_peer(
        ctx,
        "wait-delivered",
        "--paths-file",
        str(spec),
        "--timeout",
        str(max(1.0, ctx.remaining() - 10)),
        "--poll",
        "0.05",
    ) as peer:
        out: dict[str, Any] = peer.finish(grace=ctx.remaining())
    spec.unlink()
    return out


def _latencies(
    ps: Portside, ctx: Context, label: str
) -> tuple[list[float], list[float], dict[str, Any]]:
    n = ctx.pick(FILES, 10)
    folder = f"/pipeline-{label}"
    _route_to_partner(ctx, ps, folder)
    workers = worker_pids(ps)
    cpu0 = cpu_seconds(workers)
    with MachineWindow() as win:
        up = run_client(
            ctx, ps, "upload-many", "--count", str(n), "--size", str(SIZE), "--mkdir", folder
        )
        paths = [f["path"] for f in up["files"]]
        done = wait_files(ctx, ps, paths, poll=0.05)
        sent = _wait_delivered(ctx, ps, paths)
    worker_cpu = cpu_seconds(workers) - cpu0
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
        queue.append(steps["decrypt"]["started"] - row["received"])  # recorded -> a worker took it
        scan.append(steps["scan"]["finished"] - steps["scan"]["started"])
        tail.append(row["ready"] - steps["scan"]["finished"])
    if len(lat) != n:
        raise RuntimeError(f"{n - len(lat)} of {n} files not ready: {states}")
    delivered: list[float] = []
    to_send: list[float] = []
    outcomes: dict[str, int] = {}
    ready_at = {row["path"]: row["ready"] for row in done["files"]}
    for d in sent["deliveries"]:
        outcomes[d["status"]] = outcomes.get(d["status"], 0) + 1
        if d["status"] == "delivered":
            delivered.append(d["finished"] - at_226[d["path"]])
            to_send.append(d["finished"] - ready_at[d["path"]])
    if len(delivered) != n:
        raise RuntimeError(f"{n - len(delivered)} of {n} files not delivered: {outcomes}")
    first_226 = min(at_226.values())
    last_ready = max(row["ready"] for row in done["files"])
    extra = {
        "files": n,
        "upload_s": round(up["wall_s"], 3),
        "upload_files_per_s": round(n / up["wall_s"], 1),
        "pipeline_files_per_s": round(n / max(1e-3, last_ready - first_226), 1),
        "ready_after_226_ms": stats(lat, 1000, 1),
        "delivered_after_226_ms": stats(delivered, 1000, 1),
        "breakdown_p50_ms": {
            "queued": round((pct(queue, 0.5) or 0) * 1000, 1),
            "scan": round((pct(scan, 0.5) or 0) * 1000, 1),
            "dlp_and_finish": round((pct(tail, 0.5) or 0) * 1000, 1),
            "ready_to_delivered": round((pct(to_send, 0.5) or 0) * 1000, 1),
        },
        "worker_cpu_ms_per_file": round(worker_cpu * 1000 / n, 1),
        "broker": ps.broker.split("://")[0],
        **win.report(),
    }
    return lat, delivered, extra


def _results(
    prefix: str, lat: list[float], delivered: list[float], extra: dict[str, Any], broker: str
) -> list[Result]:
    q = extra["breakdown_p50_ms"]
    note = (
        f"226 -> ready, {broker}; p50 queued {q['queued']} ms, scan {q['scan']} ms; "
        f"worker {extra['worker_cpu_ms_per_file']} CPU ms/file"
    )
    sent_note = (
        f"226 -> delivered to a partner FTPS server, {broker}; "
        f"p50 ready -> delivered {q['ready_to_delivered']} ms"
    )
    out = []
    for suffix, values, text in (("", lat, note), (".delivered", delivered, sent_note)):
        p50, p95 = pct(values, 0.5) or 0, pct(values, 0.95) or 0
        out += [
            Result(
                f"{prefix}{suffix}.p50",
                p50 * 1000,
                "ms",
                limit=CLAMD_4K,
                note=text,
                extra=extra if not suffix else {},
            ),
            Result(f"{prefix}{suffix}.p95", p95 * 1000, "ms", limit=CLAMD_4K, note=text),
        ]
    return out


def _produces(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{s}.{q}" for s in ("", ".delivered") for q in ("p50", "p95"))


@measurement("pipeline.embedded", produces=_produces("pipeline.embedded"), unit="ms", timeout=900)
def embedded(ctx: Context) -> list[Result]:
    ps = main_platform(ctx)
    lat, delivered, extra = _latencies(ps, ctx, "embedded")
    return _results("pipeline.embedded", lat, delivered, extra, "filesystem broker")


if REDIS:

    @measurement("pipeline.redis", produces=_produces("pipeline.redis"), unit="ms", timeout=900)
    def redis(ctx: Context) -> list[Result]:
        ps = redis_platform(ctx, REDIS)
        lat, delivered, extra = _latencies(ps, ctx, "redis")
        return _results("pipeline.redis", lat, delivered, extra, "Redis broker")
