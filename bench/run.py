"""Run every registered measurement: ``python -m bench.run`` (or ``python bench/run.py``).

Limits run first, then figures.  Prints a table, writes
``bench/results/<UTC timestamp>.json`` and exits 1 if anything failed.
``BENCH_QUICK=1`` (or ``--quick``) shrinks every size for a CI smoke run.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` importable
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import argparse
import contextlib
import datetime as dt
import fnmatch
import importlib
import json
import math
import os
import pkgutil
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable
from typing import Any

import bench
from bench.core import (
    FACTS,
    LIMIT,
    REGISTRY,
    REPO_DIR,
    RESULTS_DIR,
    Context,
    Measurement,
    Result,
    env_flag,
    kill_all_peers,
    resolve_ratios,
)

SKIP_MODULES = {"run", "peer"}  # entry points, not measurement modules
WATCHDOG_GRACE_S = 60.0  # after a measurement's timeout: kill peers, then give up
BUSY_NOTE_FRAC = 0.10  # flag numbers taken while others used >10% of the machine


def discover() -> list[Result]:
    """Import every module of the ``bench`` package so it can register measurements."""
    errors: list[Result] = []
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda i: i.name != "limits"):
        if info.name in SKIP_MODULES or info.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"bench.{info.name}")
        except Exception as exc:  # a broken module must not hide the others
            errors.append(
                Result(
                    f"import:bench.{info.name}",
                    None,
                    "",
                    error=f"{type(exc).__name__}: {exc}",
                    kind="error",
                    module=f"bench.{info.name}",
                )
            )
    return errors


def select(patterns: list[str]) -> list[Measurement]:
    chosen = [
        m
        for m in REGISTRY
        if not patterns
        or any(fnmatch.fnmatch(n, p) for p in patterns for n in (m.name, *m.produces))
    ]
    # limits first (figures are ratios to them), registration order otherwise
    return sorted(chosen, key=lambda m: m.kind != LIMIT)


def make_workdir() -> Path:
    """Scratch dir on the repo's filesystem (the system temp dir if it is the same fs)."""
    tmp = Path(tempfile.gettempdir())
    if os.stat(tmp).st_dev == os.stat(REPO_DIR).st_dev:
        return Path(tempfile.mkdtemp(prefix="portside-bench-", dir=tmp))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".tmp-", dir=RESULTS_DIR))


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class MeasurementTimeout(Exception):
    pass


class Watchdog:
    """Bounds a measurement even if its code forgot a timeout.

    At the deadline every peer process is killed (turning blocked socket calls
    into errors) and ``MeasurementTimeout`` is raised in the main thread via
    SIGALRM (which also interrupts sleeps and blocking syscalls); the run goes
    on with the next measurement.  If the measurement still has not returned
    ``WATCHDOG_GRACE_S`` later, ``on_give_up`` writes the partial report and
    exits the process.
    """

    def __init__(self, name: str, deadline: float, on_give_up) -> None:
        self.name = name
        left = max(0.001, deadline - time.monotonic())
        signal.signal(signal.SIGALRM, self._on_alarm)
        signal.setitimer(signal.ITIMER_REAL, left)
        self._give_up = threading.Timer(left + WATCHDOG_GRACE_S, on_give_up)
        self._give_up.daemon = True
        self._give_up.start()

    def _on_alarm(self, signum, frame) -> None:
        kill_all_peers()
        raise MeasurementTimeout(f"{self.name} exceeded its timeout")

    def cancel(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        self._give_up.cancel()


def normalize(m: Measurement, out: Result | Iterable[Result] | None) -> list[Result]:
    if out is None:
        raise TypeError("measurement returned nothing")
    results = [out] if isinstance(out, Result) else list(out)
    for r in results:
        if not isinstance(r, Result):
            raise TypeError(f"measurement returned {type(r).__name__}, not Result")
        r.name = r.name or m.name
        r.kind = m.kind
        r.measurement = m.name
        r.module = m.module
        if r.limit is None:
            r.limit = m.limit
        if r.value is not None and not math.isfinite(r.value):
            r.error = f"non-finite value {r.value!r}"
    return results


def failed_results(m: Measurement, exc: BaseException) -> list[Result]:
    msg = f"{type(exc).__name__}: {exc}".strip()
    tb = traceback.format_exception(exc)
    return [
        Result(
            name,
            None,
            m.unit,
            limit=m.limit,
            error=msg,
            extra={"traceback": "".join(tb[-6:])},
            kind=m.kind,
            measurement=m.name,
            module=m.module,
        )
        for name in m.produces
    ]


# --------------------------------------------------------------------------- output


def fmt_value(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:,.2f}" if abs(v) >= 1 else f"{v:.3g}"


def row_note(r: Result) -> str:
    if r.error:
        return f"ERROR: {r.error}"
    parts = [r.note] if r.note else []
    frac = r.extra.get("background_cpu_frac")
    if isinstance(frac, int | float) and frac > BUSY_NOTE_FRAC:
        parts.append(f"busy machine: others used {frac:.0%} CPU")
    return "; ".join(parts)


def render_table(results: list[Result]) -> str:
    header = ("name", "value", "unit", "limit", "ratio", "note")
    rows = [
        (
            r.name,
            "FAILED" if r.error else fmt_value(r.value),
            r.unit,
            r.limit or ("(limit)" if r.kind == LIMIT else "-"),
            "-" if r.ratio is None else f"{r.ratio:.3f}",
            row_note(r),
        )
        for r in results
    ]
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(header)
    ]
    right = {1, 4}

    def line(cells: tuple[str, ...]) -> str:
        out = []
        for i, c in enumerate(cells):
            if i == len(cells) - 1:
                out.append(c)
            else:
                out.append(c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths[:-1]) + "  " + "-" * max(4, widths[-1] // 2)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)


def results_path(started: dt.datetime, directory: Path) -> Path:
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    for i in range(2, 1000):
        if not path.exists():
            break
        path = directory / f"{stamp}-{i}.json"
    return path


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="same as BENCH_QUICK=1")
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GLOB",
        help="run only measurements/results matching (repeatable)",
    )
    ap.add_argument("--list", action="store_true", help="list measurements and exit")
    ap.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    quick = args.quick or env_flag("BENCH_QUICK")

    results: list[Result] = discover()
    chosen = select(args.only)
    if args.list:
        for m in chosen:
            print(f"{m.kind:7} {m.name:34} {m.module:14} -> {', '.join(m.produces)}")
        return 0
    if not chosen:
        print(f"no measurement matches {args.only}", file=sys.stderr)
        return 2

    started = dt.datetime.now(dt.UTC)
    out_path = results_path(started, args.results_dir)
    workdir = make_workdir()
    ctx = Context(quick=quick, workdir=workdir)
    doc: dict[str, Any] = {
        "schema": 1,
        "started_utc": started.isoformat(),
        "quick": quick,
        "argv": sys.argv,
        "git_commit": git_commit(),
        "workdir": str(workdir),
        "env": {k: v for k, v in os.environ.items() if k.startswith("BENCH_")},
    }
    for provider in FACTS:
        try:
            doc.update(provider())
        except Exception as exc:
            doc.setdefault("facts_errors", []).append(f"{provider.__module__}: {exc!r}")

    def finish_doc(status: str) -> dict[str, Any]:
        resolve_ratios(results, partial=bool(args.only))
        doc["finished_utc"] = dt.datetime.now(dt.UTC).isoformat()
        doc["status"] = status
        doc["loadavg_at_end"] = os.getloadavg()
        doc["results"] = [r.to_json() for r in results]
        doc["failed"] = [r.name for r in results if r.failed]
        doc["ok"] = status == "complete" and not doc["failed"]
        return doc

    def give_up() -> None:  # watchdog thread: the current measurement is hung
        results.extend(
            failed_results(
                next(m for m in chosen if m.name == ctx.current),
                TimeoutError("measurement hung past its timeout; run aborted"),
            )
        )
        kill_all_peers()
        write_json(out_path, finish_doc("aborted: hung measurement"))
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"\nbench: {ctx.current} hung; partial results in {out_path}", file=sys.stderr)
        print(render_table(results), flush=True)
        os._exit(3)

    def on_sigterm(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    mode = "QUICK" if quick else "full"
    print(f"bench: {len(chosen)} measurement(s), {mode} mode, scratch {workdir}", file=sys.stderr)
    status = "complete"
    try:
        for m in chosen:
            ctx.current = m.name
            ctx.deadline = time.monotonic() + m.timeout
            print(f"  {m.name} ...", end="", flush=True, file=sys.stderr)
            t0 = time.perf_counter()
            dog = Watchdog(m.name, ctx.deadline, give_up)
            try:
                got = normalize(m, m.func(ctx))
            except Exception as exc:
                got = failed_results(m, exc)
            finally:
                dog.cancel()
                kill_all_peers()
            took = time.perf_counter() - t0
            for r in got:
                r.extra.setdefault("measurement_s", round(took, 3))
                ctx.results[r.name] = r
            results.extend(got)
            bad = [r.name for r in got if r.failed]
            print(f" {took:.1f}s" + (f"  FAILED {bad}" if bad else ""), file=sys.stderr)
    except (KeyboardInterrupt, SystemExit) as exc:
        status = f"interrupted ({type(exc).__name__})"
        print(f"\nbench: {status}", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            ctx.close()
        shutil.rmtree(workdir, ignore_errors=True)

    finish_doc(status)
    write_json(out_path, doc)
    print()
    print(render_table(results))
    print()
    print(f"{'QUICK mode; ' if quick else ''}results: {out_path}")
    if doc["failed"]:
        print(f"FAILED: {', '.join(doc['failed'])}", file=sys.stderr)
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
