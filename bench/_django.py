"""A Django-configured helper process for the product measurements.

``python -m bench._django --data-dir DIR [--database-url URL] [--broker URL] CMD ...``
configures ``mft.settings`` for one bench platform (the same ``MFT_DATA_DIR`` and
database as its gateway and worker), runs one command and prints one JSON line.
It dies by SIGALRM after ``BENCH_PEER_DEADLINE`` seconds whatever happens.

Commands:

``wait-files --owner U --paths-file F --timeout S [--poll S]``
    poll the StoredFile rows of those paths until each reached a final state
    (ready, held, infected, rejected); report their timestamps and pipeline steps.
``partner-route --partner-file F --folder DIR``
    create a partner endpoint for the FTPS server described in F (port, login, pinned
    certificate) and an on-arrival route pushing the bench user's files in DIR to it,
    through ``deliveries.services`` (idempotent: an existing route is kept).
``wait-delivered --paths-file F --timeout S [--poll S]``
    poll the push deliveries of those paths until each is delivered or failed; report
    their status, attempts and timestamps.
``audit-append --seconds S``
    call ``audit.chain.append`` in a loop; report events and per-call latency.
``audit-fill --count N``
    insert N chained audit events in bulk (hashes by ``audit.chain.content_hash``,
    rows built from the model's fields, one ``executemany`` per 10k), the last one
    through ``audit.chain.append`` so the chain's own bookkeeping (head row) is right.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

FINAL_STATES = ("ready", "held", "infected", "rejected", "deleted")
PARTNER = "bench"


def configure(args: argparse.Namespace) -> None:
    for key in [k for k in os.environ if k.startswith("MFT_")]:
        del os.environ[key]
    os.environ["MFT_DATA_DIR"] = args.data_dir
    os.environ["DJANGO_SETTINGS_MODULE"] = "mft.settings"
    os.environ["CELERY_BROKER_URL"] = args.broker
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("MFT_LOG_LEVEL", "WARNING")
    import django

    django.setup()


def epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


# --------------------------------------------------------------------------- wait-files


def wait_files(args: argparse.Namespace) -> dict[str, Any]:
    from transfers.models import StoredFile

    paths = json.loads(Path(args.paths_file).read_text())
    deadline = time.monotonic() + args.timeout
    polls = 0
    while True:
        polls += 1
        rows = {
            r.path: r
            for r in StoredFile.objects.filter(owner__username=args.owner, path__in=paths)
            .exclude(state="deleted")
            .only("path", "state")
        }
        done = [p for p in paths if p in rows and rows[p].state in FINAL_STATES]
        if len(done) == len(paths) or time.monotonic() > deadline:
            break
        time.sleep(args.poll)
    return {"polls": polls, "timed_out": len(done) < len(paths), "files": _describe(args, paths)}


def _describe(args: argparse.Namespace, paths: list[str]) -> list[dict[str, Any]]:
    from transfers.models import PipelineStep, StoredFile

    files = list(
        StoredFile.objects.filter(owner__username=args.owner, path__in=paths).exclude(
            state="deleted"
        )
    )
    steps: dict[int, dict[str, Any]] = {}
    for s in PipelineStep.objects.filter(stored_file__in=files):
        steps.setdefault(s.stored_file_id, {})[s.name] = {
            "status": s.status,
            "outcome": s.outcome,
            "attempts": s.attempts,
            "started": epoch(s.started_at),
            "finished": epoch(s.finished_at),
        }
    return [
        {
            "path": f.path,
            "state": f.state,
            "reason": f.state_reason,
            "size": f.size,
            "storage_path": f.storage_path,
            "created": epoch(f.created_at),
            "received": epoch(f.received_at),
            "ready": epoch(f.ready_at),
            "changed": epoch(f.state_changed_at),
            "steps": steps.get(f.pk, {}),
        }
        for f in files
    ]


# --------------------------------------------------------------------------- deliveries


def partner_route(args: argparse.Namespace) -> dict[str, Any]:
    from accounts.models import User
    from deliveries import services
    from deliveries.models import PartnerEndpoint, Route

    info = json.loads(Path(args.partner_file).read_text())
    user = User.objects.get(username=args.owner)
    assert user.partner is not None, "the bench user belongs to a partner"
    name = "bench-" + args.folder.strip("/").replace("/", "-")
    route = Route.objects.filter(name=name).first()
    if route is None:
        endpoint = PartnerEndpoint.objects.filter(name=name).first() or services.create_endpoint(
            partner=user.partner,
            name=name,
            host="127.0.0.1",
            port=info["port"],
            username=info["user"],
            password=info["password"],
            pinned_sha256=info["sha256"],
            timeout_seconds=30,
            # Above the outbound worker's threads, so the partner's limit never applies: a
            # delivery that finds its endpoint full waits for a kick or the sweeper (beat),
            # and under a burst some wait for the sweeper; the bench runs no beat.
            max_connections=args.max_connections,
        )
        route = services.create_route(
            name=name, endpoint=endpoint, source_user=user, source_folder=args.folder
        )
    return {"route": route.pk, "endpoint": route.endpoint_id}


def wait_delivered(args: argparse.Namespace) -> dict[str, Any]:
    from deliveries.models import Delivery

    paths = json.loads(Path(args.paths_file).read_text())
    settled = (Delivery.Status.DELIVERED, Delivery.Status.FAILED, Delivery.Status.CANCELLED)
    deadline = time.monotonic() + args.timeout
    polls = 0
    while True:
        polls += 1
        rows = list(
            Delivery.objects.filter(
                direction=Delivery.Direction.PUSH, local_owner=args.owner, local_path__in=paths
            )
        )
        done = {r.local_path for r in rows if r.status in settled}
        if len(done) == len(paths) or time.monotonic() > deadline:
            break
        time.sleep(args.poll)
    return {
        "polls": polls,
        "timed_out": len(done) < len(paths),
        "deliveries": [
            {
                "path": r.local_path,
                "status": r.status,
                "attempts": r.attempts,
                "error": r.last_error,
                "created": epoch(r.created_at),
                "started": epoch(r.started_at),
                "finished": epoch(r.finished_at),
            }
            for r in rows
        ],
    }


# --------------------------------------------------------------------------- audit


def audit_append(args: argparse.Namespace) -> dict[str, Any]:
    from audit import chain

    lat: list[float] = []
    details = {"bytes": 4096, "sha256": "0" * 64, "seconds": 0.012, "bench": True}
    end = time.monotonic() + args.seconds
    t0 = time.perf_counter()
    c0 = time.process_time()
    while time.monotonic() < end:
        t = time.perf_counter()
        chain.append(
            actor=PARTNER,
            actor_id=None,
            source_ip="127.0.0.1",
            protocol="ftps",
            action="bench.append",
            object_type="file",
            object_id=str(len(lat)),
            object_repr=f"/bench/{os.getpid()}/{len(lat)}.bin",
            outcome="success",
            details=details,
        )
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "events": len(lat),
        "wall_s": wall,
        "cpu_s": time.process_time() - c0,
        "lat_p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
        "lat_p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
    }


def audit_fill(args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connection, transaction

    from audit import chain
    from audit.models import AuditEvent

    if connection.vendor == "sqlite":  # this process only: 1M rows, 7 indexes
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA cache_size=-262144")
    last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
    prev = last or chain.GENESIS
    start = datetime.now(UTC) - timedelta(days=30)
    # A multi-row executemany built from the model's own fields (what bulk_create does, minus
    # its 999-parameter batches): the fill is not what we measure, and 1M rows must be quick.
    fields = [f for f in AuditEvent._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    table = connection.ops.quote_name(str(AuditEvent._meta.db_table))
    marks = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608 - model metadata
    t0 = time.perf_counter()
    hash_s = 0.0
    done = 0
    total = args.count - 1  # the last one goes through chain.append
    while done < total:
        n = min(args.batch, total - done)
        h0 = time.perf_counter()
        rows = []
        ev = AuditEvent()
        for i in range(done, done + n):
            _synthetic_event(ev, i, start)
            ev.prev_hash = prev
            ev.hash = prev = chain.content_hash(ev, prev)
            rows.append([f.get_db_prep_save(f.pre_save(ev, True), connection) for f in fields])
        hash_s += time.perf_counter() - h0
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)
        done += n
    chain.append(
        actor=PARTNER,
        actor_id=None,
        source_ip="127.0.0.1",
        protocol="ftps",
        action="bench.fill-end",
        object_type="",
        object_id="",
        object_repr="",
        outcome="info",
        details={"filled": done},
    )
    return {
        "inserted": done + 1,
        "wall_s": time.perf_counter() - t0,
        "build_hash_s": hash_s,
        "count": AuditEvent.objects.count(),
    }


_ACTIONS = (
    ("upload", "success"),
    ("download", "success"),
    ("login", "success"),
    ("session.connect", "info"),
    ("pipeline.scan", "success"),
    ("login", "failure"),
)


def _synthetic_event(ev: Any, i: int, start: datetime) -> None:
    """Make ``ev`` event number i, shaped like the gateway's (file and session events)."""
    action, outcome = _ACTIONS[i % len(_ACTIONS)]
    ev.created_at = start + timedelta(milliseconds=i * 2.5)
    ev.actor, ev.actor_id = f"partner{i % 97}", i % 97 + 1
    ev.source_ip, ev.protocol = f"198.51.100.{i % 250 + 1}", "ftps"
    ev.action, ev.outcome, ev.object_type, ev.object_id = action, outcome, "file", str(i)
    ev.object_repr = f"/inbound/{i // 1000}/invoice-{i}.csv"
    ev.details = {
        "bytes": 4096 + i % 1000,
        "sha256": f"{i:064x}",
        "seconds": 0.012,
        "session": f"{i * 2654435761 % 2**48:012x}",
        "implicit": False,
    }


# --------------------------------------------------------------------------- main


COMMANDS = {
    "wait-files": wait_files,
    "partner-route": partner_route,
    "wait-delivered": wait_delivered,
    "audit-append": audit_append,
    "audit-fill": audit_fill,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench._django")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--broker", default="filesystem://")
    ap.add_argument("command", choices=sorted(COMMANDS))
    ap.add_argument("--owner", default=PARTNER)
    ap.add_argument("--paths-file")
    ap.add_argument("--partner-file")
    ap.add_argument("--folder", default="/")
    ap.add_argument("--max-connections", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--poll", type=float, default=0.05)
    ap.add_argument("--seconds", type=float, default=2)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=10000)
    args = ap.parse_args(argv)
    signal.alarm(max(1, int(os.environ.get("BENCH_PEER_DEADLINE", "600"))))
    configure(args)
    out = COMMANDS[args.command](args)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
