"""Check the database, the broker, the worker and clamd, each with a status."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from mft import heartbeat
from mft.models import ProcessHeartbeat


def _database() -> dict[str, Any]:
    """Return the database's status."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"status": "ok", "vendor": connection.vendor}
    except Exception as exc:  # noqa: BLE001 - health reports any failure as data
        return {"status": "down", "error": str(exc)[:200]}


def _broker() -> dict[str, Any]:
    """Return the broker's status by opening a connection to it."""
    from mft.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"status": "ok", "transport": conn.transport_cls}
    except Exception as exc:  # noqa: BLE001
        return {"status": "down", "error": str(exc)[:200]}


def _processes(kind: str) -> dict[str, Any]:
    """Return how many processes of a kind are alive."""
    try:
        count = len(heartbeat.alive(kind))
    except Exception as exc:  # noqa: BLE001
        return {"status": "down", "error": str(exc)[:200]}
    return {"status": "ok" if count else "down", "alive": count}


def _clamd() -> dict[str, Any]:
    """Return the scanner's status, or why there is none."""
    if settings.SCAN_MODE == "off":
        return {"status": "disabled", "detail": "scanning switched off (MFT_SCAN=off)"}
    if not settings.CLAMD_ADDRESS:
        return {"status": "not_configured", "detail": "MFT_CLAMD unset: uploads are held"}
    from transfers.scanning import ClamdClient, ScannerError

    try:
        version = ClamdClient(settings.CLAMD_ADDRESS, timeout=3).version()
    except (ScannerError, OSError) as exc:
        return {"status": "down", "error": str(exc)[:200]}
    return {"status": "ok", "version": version, **_signatures(version)}


def _signatures(version: str) -> dict[str, Any]:
    """Return the signature database's date and age (None for a home-made database)."""
    from monitoring.signatures import signature_age_seconds, signature_date

    built = signature_date(version)
    return {"signatures_built_at": built.isoformat() if built else None,
            "signature_age_seconds": signature_age_seconds(version, timezone.now())}


def _pipeline() -> dict[str, Any]:
    """Return how many files are stuck short of a final state (informational)."""
    from transfers import pipeline

    try:
        stuck = len(pipeline.stuck_files(settings.PIPELINE_STUCK_SECONDS))
    except Exception as exc:  # noqa: BLE001
        return {"status": "down", "error": str(exc)[:200]}
    return {"status": "ok" if not stuck else "warning", "stuck_files": stuck,
            "threshold_seconds": settings.PIPELINE_STUCK_SECONDS}


def _audit_spool() -> dict[str, Any]:
    """Return the gateway audit spool's backlog on this host: events not yet in the chain."""
    from audit import spool

    try:
        backlog = spool.backlog()
    except Exception as exc:  # noqa: BLE001
        return {"status": "down", "error": str(exc)[:200]}
    late = backlog["oldest_pending_seconds"] > spool.LOG_AFTER
    return {"status": "warning" if late else "ok", **backlog}


def report() -> dict[str, Any]:
    """Return the whole health report; status is ok when database, broker and worker are."""
    components = {
        "database": _database(),
        "broker": _broker(),
        "worker": _processes(ProcessHeartbeat.Kind.WORKER),
        "gateway": _processes(ProcessHeartbeat.Kind.GATEWAY),
        "clamd": _clamd(),
        "pipeline": _pipeline(),
        "audit_spool": _audit_spool(),
    }
    required = ("database", "broker", "worker")
    ok = all(components[name]["status"] == "ok" for name in required)
    return {"status": "ok" if ok else "degraded", "components": components}
