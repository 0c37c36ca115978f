"""Audit figures: events written per second, and ``verify_audit`` over 1 million events.

* ``audit.append`` / ``audit.append.4writers``: ``audit.chain.append`` called in a
  loop by one, then four, Django-configured processes (:mod:`bench._django`)
  against the run's platform database while the platform runs.
* ``audit.verify``: ``manage.py verify_audit`` (wall time, Django start-up
  included) over a database of 1 million events (100k with ``BENCH_QUICK``),
  filled in bulk with correct chain hashes (``audit.chain.content_hash``; the
  last event through ``audit.chain.append``).  A separate SQLite file (a copy of
  the platform's freshly migrated database), so the platform's own stays small.

Limits:

* ``sqlite.commit``: one-row write transactions per second on a bare SQLite
  file with the product's settings (WAL, ``synchronous=NORMAL``, ``BEGIN
  IMMEDIATE``), each reading the newest row first as ``append`` does.
* ``audit.verify.floor``: the same chain check done with ``sqlite3``, ``json``
  and ``hashlib`` only (no ORM) over the same database: what a Python verifier
  cannot beat.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench.api  # noqa: F401 - figures run in import order: ftps, pipeline, api, audit
from bench.core import LIMIT, REPO_DIR, Context, Result, measurement
from bench.portside import MachineWindow, base_env, main_platform

SQLITE_COMMIT = "sqlite.commit"
VERIFY_FLOOR = "audit.verify.floor"
EVENTS = 1_000_000
WRITERS = 4
GENESIS = "0" * 64


@measurement(SQLITE_COMMIT, kind=LIMIT, unit="/s", timeout=60)
def sqlite_commit(ctx: Context) -> Result:
    path = ctx.workdir / "commit.sqlite3"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, created TEXT, body TEXT, "
        "prev TEXT, hash TEXT UNIQUE)"
    )
    body = json.dumps({"bytes": 4096, "sha256": "0" * 64, "seconds": 0.012})
    seconds = ctx.pick(3.0, 1.0)
    n = 0
    end = time.monotonic() + seconds
    with MachineWindow() as win:
        while time.monotonic() < end:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT hash FROM ev ORDER BY id DESC LIMIT 1").fetchone()
            prev = row[0] if row else GENESIS
            digest = hashlib.sha256((prev + body + str(n)).encode()).hexdigest()
            con.execute(
                "INSERT INTO ev (created, body, prev, hash) VALUES (?, ?, ?, ?)",
                (datetime.now(UTC).isoformat(), body, prev, digest),
            )
            con.execute("COMMIT")
            n += 1
    wall = win.wall_s
    con.close()
    return Result(
        SQLITE_COMMIT,
        n / wall,
        "/s",
        note="1-row write transactions, WAL, synchronous=NORMAL",
        extra={"transactions": n, **win.report()},
    )


# --------------------------------------------------------------------------- 1M events


@contextlib.contextmanager
def _filled_db(ctx: Context) -> Iterator[dict[str, Any]]:
    data_dir = ctx.workdir / "audit-db"
    data_dir.mkdir(exist_ok=True)
    db = data_dir / "audit.sqlite3"
    url = f"sqlite:///{db}"
    env = {**base_env(data_dir), "DATABASE_URL": url}
    count = ctx.size(EVENTS, EVENTS // 10)
    template = main_platform(ctx).migrated_db
    if template.exists():  # the platform's database right after migrate: saves a migrate
        shutil.copyfile(template, db)
    else:
        subprocess.run(
            [sys.executable, str(REPO_DIR / "manage.py"), "migrate", "--noinput", "-v", "0"],
            cwd=REPO_DIR,
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    with ctx.python_peer(
        "bench._django",
        "--data-dir",
        str(data_dir),
        "--database-url",
        url,
        "audit-fill",
        "--count",
        str(count),
        name="audit-fill",
    ) as peer:
        fill = peer.finish(grace=ctx.remaining())
    yield {"db": db, "env": env, "events": count, "fill": fill}


def audit_db(ctx: Context) -> dict[str, Any]:
    return ctx.shared("audit-db", _filled_db)


_COLUMNS = (
    "id, created_at, actor, actor_id, source_ip, protocol, action, object_type, "
    "object_id, object_repr, outcome, details, prev_hash, hash"
)


def floor_verify(db: Path, batch: int = 10000) -> tuple[int, int | None]:
    """Check every event's hash and link with sqlite3/json/hashlib; (count, first bad id)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    expected, last_id, count = None, 0, 0
    dumps, loads, sha = json.dumps, json.loads, hashlib.sha256
    try:
        while True:
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM audit_auditevent WHERE id > ? "  # noqa: S608
                "ORDER BY id LIMIT ?",
                (last_id, batch),
            ).fetchall()
            if not rows:
                return count, None
            for (
                eid,
                created,
                actor,
                actor_id,
                ip,
                proto,
                action,
                otype,
                oid,
                orepr,
                outcome,
                details,
                prev,
                digest,
            ) in rows:
                count += 1
                if expected is not None and prev != expected:
                    return count, eid
                content = {
                    "created_at": datetime.fromisoformat(created).replace(tzinfo=UTC).isoformat(),
                    "actor": actor,
                    "actor_id": actor_id,
                    "source_ip": ip,
                    "protocol": proto,
                    "action": action,
                    "object_type": otype,
                    "object_id": oid,
                    "object_repr": orepr,
                    "outcome": outcome,
                    "details": loads(details),
                    "prev": prev,
                }
                text = dumps(content, sort_keys=True, separators=(",", ":"), default=str)
                if sha(text.encode()).hexdigest() != digest:
                    return count, eid
                expected = digest
            last_id = rows[-1][0]
    finally:
        con.close()


@measurement(VERIFY_FLOOR, kind=LIMIT, unit="s", timeout=1800)
def verify_floor(ctx: Context) -> Result:
    db = audit_db(ctx)
    with MachineWindow() as win:
        count, bad = floor_verify(db["db"])
    wall = win.wall_s
    if bad is not None:
        raise RuntimeError(f"floor verifier disagrees with the chain at event {bad}")
    return Result(
        VERIFY_FLOOR,
        wall,
        "s",
        note=f"{count:,} events, sqlite3+json+hashlib, no ORM",
        extra={"events": count, "fill": db["fill"], **win.report()},
    )


# --------------------------------------------------------------------------- figures


@measurement(
    "audit.append",
    produces=("audit.append", "audit.append.4writers"),
    unit="/s",
    limit=SQLITE_COMMIT,
    timeout=300,
)
def append(ctx: Context) -> list[Result]:
    ps = main_platform(ctx)
    seconds = str(ctx.pick(5.0, 1.0))
    out = []
    for writers in (1, WRITERS):
        with MachineWindow() as win:
            peers = [
                ps.django_peer(ctx, "audit-append", "--seconds", seconds, name=f"audit-append-{i}")
                for i in range(writers)
            ]
            try:
                reports = [p.finish(grace=ctx.remaining()) for p in peers]
            finally:
                for p in peers:
                    p.close()
        events = sum(r["events"] for r in reports)
        wall = max(r["wall_s"] for r in reports)
        name = "audit.append" if writers == 1 else f"audit.append.{writers}writers"
        p50 = max(r["lat_p50_ms"] for r in reports)
        p99 = max(r["lat_p99_ms"] for r in reports)
        out.append(
            Result(
                name,
                events / wall,
                "/s",
                note=f"{writers} process(es) calling audit.chain.append; "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms per event",
                extra={"writers": reports, **win.report()},
            )
        )
    return out


@measurement("audit.verify", unit="s", limit=VERIFY_FLOOR, timeout=1800)
def verify(ctx: Context) -> Result:
    db = audit_db(ctx)
    with MachineWindow() as win:
        proc = subprocess.run(
            [sys.executable, str(REPO_DIR / "manage.py"), "verify_audit"],
            cwd=REPO_DIR,
            env=db["env"],
            capture_output=True,
            text=True,
            timeout=ctx.remaining(),
        )
    if proc.returncode != 0:
        raise RuntimeError(f"verify_audit exited {proc.returncode}: {proc.stderr[-500:]}")
    m = re.search(r"([\d,]+) events verified in ([\d.]+) s", proc.stdout)
    inner = float(m.group(2)) if m else None
    return Result(
        "audit.verify",
        win.wall_s,
        "s",
        note=f"manage.py verify_audit, {db['events']:,} events, wall incl. start-up"
        + (f" (walk {inner:.1f} s)" if inner is not None else ""),
        extra={"stdout": proc.stdout.strip()[-300:], "walk_s": inner, **win.report()},
    )
