"""Prometheus counters every Portside process may increment, safe across processes.

Web workers, gateway processes and Celery workers are separate processes, so the counters
use prometheus_client's multiprocess mode: each process writes its values to memory-mapped
files in one shared folder (`PROMETHEUS_MULTIPROC_DIR`, by default `MFT_DATA_DIR/metrics`),
and `/metrics` merges the files of every process. Files are named by host *and* pid, so
processes in different containers sharing the data volume never write the same file.

Whoever starts a set of processes calls `clear_directory()` first (counters restart from
zero, which Prometheus handles as a reset). Gauges of what is live now (FTPS sessions) are
read only from processes still alive; totals from processes that exited are kept.

Most counters are fed by one call in `audit.chain.append` (`count_audit_event`): logins,
transfers and deliveries are all audited, so every edge is counted alike.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

DIRECTORY = Path(settings.METRICS_DIR)
DIRECTORY.mkdir(parents=True, exist_ok=True)
# prometheus_client reads the folder from the environment only; children inherit it.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(DIRECTORY)

from prometheus_client import Counter, Gauge, values  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402


def _host() -> str:
    # "_" separates the parts of a metric file's name.
    return socket.gethostname().replace("_", "-") or "localhost"


def process_identity(pid: int | None = None) -> str:
    """Return the name this process's metric files carry: host and pid."""
    return f"{_host()}-{os.getpid() if pid is None else pid}"


# Chosen before any metric exists; the default identity (the pid alone) collides between
# containers that share the folder.
values.ValueClass = values.MultiProcessValue(process_identifier=process_identity)

AUDIT_EVENTS = Counter("portside_audit_events", "Audit events written, by action and outcome.",
                       ["action", "outcome"])
LOGINS = Counter("portside_logins", "Logins by protocol and outcome.", ["protocol", "outcome"])
TRANSFERS = Counter("portside_transfers", "File transfers by direction and outcome.",
                    ["direction", "outcome"])
TRANSFER_BYTES = Counter("portside_transfer_bytes", "Bytes moved by uploads and downloads.",
                         ["direction"])
DELIVERIES = Counter("portside_deliveries", "Partner deliveries settled, by outcome.",
                     ["outcome"])
PIPELINE_STEPS = Counter("portside_pipeline_steps", "Pipeline steps run, by step and outcome.",
                         ["step", "outcome"])
NOTIFICATIONS = Counter("portside_notifications", "Notification sends, by channel and outcome.",
                        ["channel", "outcome"])
FTPS_SESSIONS = Gauge("portside_ftps_sessions", "FTPS control connections open now.",
                      multiprocess_mode="livesum")

# Series that exist from the start (at 0), so rate() and alerts see them before the first event.
for _outcome in ("success", "failure"):
    for _protocol in ("ftps", "https", "web"):
        LOGINS.labels(_protocol, _outcome)
    for _direction in ("in", "out"):
        TRANSFERS.labels(_direction, _outcome)
for _channel in ("email", "webhook"):
    for _outcome in ("sent", "retry", "failed"):
        NOTIFICATIONS.labels(_channel, _outcome)
for _outcome in ("delivered", "failed", "cancelled"):
    DELIVERIES.labels(_outcome)

_TRANSFER_DIRECTIONS = {"upload": "in", "download": "out"}
_DELIVERY_OUTCOMES = {"delivery.delivered": "delivered", "delivery.failed": "failed",
                      "delivery.cancelled": "cancelled"}


def count_audit_event(event: Any) -> None:
    """Count an audit event once its transaction commits (never raises)."""
    action, outcome, protocol = event.action, event.outcome, event.protocol
    details = event.details if isinstance(event.details, dict) else {}

    def count() -> None:
        try:
            _count(action, outcome, protocol, details)
        except Exception:
            log.warning("could not count audit event %s", action, exc_info=True)

    transaction.on_commit(count)


def _count(action: str, outcome: str, protocol: str, details: dict[str, Any]) -> None:
    AUDIT_EVENTS.labels(action, outcome).inc()
    if action == "login":
        LOGINS.labels(protocol or "unknown", outcome).inc()
    elif action in _TRANSFER_DIRECTIONS:
        direction = _TRANSFER_DIRECTIONS[action]
        TRANSFERS.labels(direction, outcome).inc()
        moved = details.get("bytes")
        if isinstance(moved, int) and moved > 0:
            TRANSFER_BYTES.labels(direction).inc(moved)
    elif action in _DELIVERY_OUTCOMES:
        DELIVERIES.labels(_DELIVERY_OUTCOMES[action]).inc()
    elif action.startswith("pipeline."):
        PIPELINE_STEPS.labels(action.removeprefix("pipeline."), outcome).inc()


def ftps_session_opened() -> None:
    """Count an FTPS session in this process's live gauge (the gateway calls it at connect).

    Counted where the session lives, not from its audit events: those are written later,
    in batches, and after a crash by another process, which would skew a live gauge.
    """
    FTPS_SESSIONS.inc()


def ftps_session_closed() -> None:
    """Uncount an FTPS session opened with ftps_session_opened()."""
    FTPS_SESSIONS.dec()


def clear_directory(*, this_host_only: bool = False) -> int:
    """Remove metric files before starting processes (all, or this host's); return how many.

    `this_host_only` suits containers that share the folder: each clears its own at start.
    """
    removed = 0
    for path in DIRECTORY.glob("*.db"):
        identity = _file_identity(path)
        if this_host_only and (identity is None or identity[0] != _host()):
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _file_identity(path: Path) -> tuple[str, int] | None:
    """Return the host and pid a metric file belongs to, or None when it names neither."""
    identity = path.stem.rsplit("_", 1)[-1]
    host, _, pid = identity.rpartition("-")
    return (host, int(pid)) if host and pid.isdigit() else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ProcessFilesCollector(Collector):
    """Merge the metric files of every process, skipping live gauges of processes gone.

    A process is alive when it runs on this host, or when another host's process still
    sends heartbeats (`alive_elsewhere`: names `host:pid`).
    """

    def __init__(self, alive_elsewhere: Iterable[str] = ()) -> None:
        self.alive_elsewhere = set(alive_elsewhere)

    def _alive(self, path: Path) -> bool:
        identity = _file_identity(path)
        if identity is None:
            return False
        host, pid = identity
        if host == _host():
            return _pid_alive(pid)
        return f"{host}:{pid}" in self.alive_elsewhere

    def collect(self) -> Iterable[Any]:
        """Yield the merged metrics of every process."""
        files = [str(path) for path in sorted(DIRECTORY.glob("*.db"))
                 if not path.name.startswith("gauge_live") or self._alive(path)]
        return MultiProcessCollector.merge(files, accumulate=True)
