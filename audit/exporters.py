"""Export audit events as CSV or JSON lines, streamed in id order a batch at a time.

Keyset pagination on id (never OFFSET, never the whole table in memory), bounded by the
newest id when the export starts, so millions of rows stream in flat memory and a long
export is a consistent slice even while new events arrive.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.db.models import Max, QuerySet

from audit import events
from audit.events import Origin
from audit.models import AuditEvent

BATCH = 1000
COLUMNS = ("id", "created_at", "actor", "actor_id", "source_ip", "protocol", "action",
           "object_type", "object_id", "object_repr", "outcome", "details", "prev_hash",
           "hash")
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl"}
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def as_dict(event: AuditEvent) -> dict[str, Any]:
    """Return an event as plain JSON-ready values."""
    row = {name: getattr(event, name) for name in COLUMNS}
    row["created_at"] = event.created_at.isoformat()
    return row


def iter_events(queryset: QuerySet[AuditEvent], *, batch: int = BATCH
                ) -> Iterator[list[AuditEvent]]:
    """Yield the matching events in id order, one batch (a list) at a time."""
    newest = queryset.aggregate(newest=Max("id"))["newest"]
    if newest is None:
        return
    rows = queryset.filter(id__lte=newest).order_by("id")
    last = 0
    while page := list(rows.filter(id__gt=last)[:batch]):
        yield page
        last = page[-1].id


def _jsonl(queryset: QuerySet[AuditEvent]) -> Iterator[bytes]:
    """Yield JSON lines, one event per line."""
    for page in iter_events(queryset):
        yield "".join(json.dumps(as_dict(e), ensure_ascii=False) + "\n"
                      for e in page).encode()


def _cell(value: Any) -> str:
    """Return a CSV cell; text that a spreadsheet would run as a formula is quoted with '."""
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv(queryset: QuerySet[AuditEvent]) -> Iterator[bytes]:
    """Yield CSV: a header, then one row per event."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for page in iter_events(queryset):
        for event in page:
            writer.writerow([_cell(value) for value in as_dict(event).values()])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue().encode()


def export(queryset: QuerySet[AuditEvent], file_format: str, *, origin: Origin,
           filters: dict[str, str]) -> Iterator[bytes]:
    """Audit the export, then return the stream of the matching events in the format."""
    if file_format not in FORMATS:
        raise ValueError(f"unknown export format {file_format!r}")
    shown = {name: value[:200] for name, value in filters.items()}
    events.audit_exported(origin=origin, file_format=file_format, filters=shown)
    return _csv(queryset) if file_format == "csv" else _jsonl(queryset)
