"""Delivery receipts: what was sent or fetched, where, verified how; queryable and exportable."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from deliveries.models import Delivery
from mft.errors import InvalidInput

FIELDS = ("id", "direction", "status", "partner", "endpoint", "host", "route", "pull",
          "file_id", "local_owner", "local_path", "source_size", "source_sha256",
          "remote_path", "pgp_encrypted", "pgp_signed", "sent_size", "sent_sha256", "verified_by",
          "attempts", "requested_by", "resend_of", "created_at", "finished_at", "last_error")


def receipt(delivery: Delivery) -> dict[str, Any]:
    """Return one delivery's receipt as plain values."""
    endpoint = delivery.endpoint
    return {
        "id": delivery.pk, "direction": delivery.direction, "status": delivery.status,
        "partner": endpoint.partner.name, "endpoint": endpoint.name,
        "host": f"{endpoint.host}:{endpoint.port}",
        "route": delivery.route.name if delivery.route else None,
        "pull": delivery.pull.name if delivery.pull else None,
        "file_id": delivery.stored_file_id, "local_owner": delivery.local_owner,
        "local_path": delivery.local_path, "source_size": delivery.source_size,
        "source_sha256": delivery.source_sha256, "remote_path": delivery.remote_path,
        "pgp_encrypted": delivery.pgp_encrypted, "pgp_signed": delivery.pgp_signed,
        "sent_size": delivery.sent_size,
        "sent_sha256": delivery.sent_sha256, "verified_by": delivery.verified_by,
        "attempts": delivery.attempts, "requested_by": delivery.requested_by,
        "resend_of": delivery.resend_of_id, "created_at": _iso(delivery.created_at),
        "finished_at": _iso(delivery.finished_at), "last_error": delivery.last_error,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def attempts(delivery: Delivery) -> list[dict[str, Any]]:
    """Return every attempt at a delivery: when, how far, bytes, reply, error."""
    return [{"number": a.number, "worker": a.worker, "stage": a.stage,
             "started_at": _iso(a.started_at), "finished_at": _iso(a.finished_at),
             "seconds": a.seconds, "outcome": a.outcome or "running",
             "bytes": a.bytes_transferred, "resumed_from": a.resumed_from,
             "remote_reply": a.remote_reply, "error": a.error, "details": a.details}
            for a in delivery.attempts_log.order_by("number")]


def search(*, partner_id: int | None = None, endpoint_id: int | None = None,
           route_id: int | None = None, pull_id: int | None = None,
           status: str | None = None, file_id: int | None = None,
           since: datetime | None = None, until: datetime | None = None) -> QuerySet[Delivery]:
    """Return deliveries matching every given filter, newest first."""
    rows = Delivery.objects.select_related("endpoint__partner", "route", "pull")
    filters = {"endpoint__partner_id": partner_id, "endpoint_id": endpoint_id,
               "route_id": route_id, "pull_id": pull_id, "status": status,
               "stored_file_id": file_id, "created_at__gte": since, "created_at__lt": until}
    return rows.filter(**{k: v for k, v in filters.items() if v is not None}).order_by(
        "-created_at", "-pk")


def export(rows: Iterable[Delivery], *, fmt: str = "csv") -> Iterator[str]:
    """Yield receipts as CSV (with a header) or JSON lines, a chunk per delivery."""
    if fmt == "jsonl":
        for delivery in rows:
            yield json.dumps(receipt(delivery), sort_keys=True) + "\n"
        return
    if fmt != "csv":
        raise InvalidInput(f"unknown export format {fmt!r}: use csv or jsonl")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    for delivery in rows:
        writer.writerow(receipt(delivery))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
