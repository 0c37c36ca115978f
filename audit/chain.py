"""Write and verify the hash chain that makes the audit log tamper-evident."""

from __future__ import annotations

import contextvars
import functools
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.models import ArchiveRecord, AuditEvent, ChainHead
from mft import metrics

GENESIS = "0" * 64
# Arbitrary constant naming the chain's PostgreSQL advisory lock.
_CHAIN_LOCK_ID = 0x504F5254
_FIELDS = ("id", "created_at", "actor", "actor_id", "source_ip", "protocol", "action",
           "object_type", "object_id", "object_repr", "outcome", "details", "prev_hash", "hash")


def _digest(values: dict[str, Any], prev_hash: str) -> str:
    """Return the SHA-256 of an event's content joined to the previous event's hash."""
    content = {**values, "prev": prev_hash}
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


def _content(created_at: Any, actor: str, actor_id: int | None, source_ip: str | None,
             protocol: str, action: str, object_type: str, object_id: str, object_repr: str,
             outcome: str, details: Any) -> dict[str, Any]:
    """Return the hashed fields of an event."""
    return {"created_at": created_at.isoformat(), "actor": actor, "actor_id": actor_id,
            "source_ip": source_ip, "protocol": protocol, "action": action,
            "object_type": object_type, "object_id": object_id, "object_repr": object_repr,
            "outcome": outcome, "details": details}


def content_hash(event: AuditEvent, prev_hash: str) -> str:
    """Return the hash an event must carry, given the previous event's hash."""
    return _digest(_content(event.created_at, event.actor, event.actor_id, event.source_ip,
                            event.protocol, event.action, event.object_type, event.object_id,
                            event.object_repr, event.outcome, event.details), prev_hash)


def lock_writers() -> None:
    """Hold the chain's writer lock until this transaction ends (taken again: at once).

    A transaction that takes another lock and also appends takes this one first, so two
    never wait on each other in opposite orders (see notifications.services._lock_feed).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])
    # On SQLite the IMMEDIATE transaction already holds the database write lock.


def _lock_head() -> ChainHead:
    """Serialise chain writers and return the head row."""
    lock_writers()
    head = _read_head()
    if head is None:
        last = AuditEvent.objects.order_by("-id").values_list("id", "hash").first()
        head = ChainHead(pk=1, last_id=last[0] if last else 0,
                         last_hash=last[1] if last else _archived_head()[1],
                         count=AuditEvent.objects.count())
        head.save()
    return head


def _head_sql(template: str) -> str:
    """Return a statement on the head row with its table and columns quoted."""
    quote = connection.ops.quote_name
    return template.format(table=quote(ChainHead._meta.db_table), last_id=quote("last_id"),
                           last_hash=quote("last_hash"), count=quote("count"))


def _read_head() -> ChainHead | None:
    """Return the head row, read with plain SQL: every audit write reads it under the lock,
    and the ORM's query building cost more than the query."""
    with connection.cursor() as cursor:
        cursor.execute(_head_sql("SELECT {last_id}, {last_hash}, {count} FROM {table} "
                                 "WHERE id = 1"))
        row = cursor.fetchone()
    if row is None:
        return None
    return ChainHead(pk=1, last_id=row[0], last_hash=row[1], count=row[2])


def _move_head(last_id: int, last_hash: str, count: int) -> None:
    """Point the head row at the newest event (plain SQL, as _read_head)."""
    with connection.cursor() as cursor:
        cursor.execute(_head_sql("UPDATE {table} SET {last_id} = %s, {last_hash} = %s, "
                                 "{count} = %s WHERE id = 1"), [last_id, last_hash, count])


def append(*, created_at: datetime | None = None, **fields: Any) -> AuditEvent:
    """Insert one event at the head of the chain, serialised against concurrent writers.

    created_at is when it happened, when that was before now (an event from a spool); it is
    hashed like any other field. Inside appended_together() the event is only queued.
    """
    event = AuditEvent(created_at=created_at or timezone.now(), **fields)
    queued = _together.get()
    if queued is not None:
        queued.append(event)
    else:
        _append_all([event])
    return event


# Events queued by appended_together() in this context, or None: append at once.
_together: contextvars.ContextVar[list[AuditEvent] | None] = contextvars.ContextVar(
    "audit_chain_together", default=None)


@contextmanager
def appended_together() -> Iterator[None]:
    """Append the events written inside as one chain append when the block ends.

    For a use case that writes several events in one transaction (an upload lands: its
    `upload` event and the pipeline's `received`): one chain lock, one read and one update
    of the head, one INSERT, instead of one of each per event. Events appended inside get
    their id and hash only when the block ends; nothing is appended if it raises.
    """
    queued: list[AuditEvent] = []
    token = _together.set(queued)
    try:
        yield
    finally:
        _together.reset(token)
    _append_all(queued)


def _append_all(batch: list[AuditEvent]) -> None:
    """Hash the events in order onto the head of the chain and insert them."""
    if not batch:
        return
    # No savepoint inside a caller's transaction (two statements per append): an append
    # that fails fails the caller's transaction with it, as an audited change must.
    with transaction.atomic(savepoint=False):
        head = _lock_head()
        prev = head.last_hash
        for event in batch:
            event.prev_hash = prev
            event.hash = prev = content_hash(event, prev)
        if connection.features.can_return_rows_from_bulk_insert:
            for start in range(0, len(batch), _INSERT_ROWS):
                _insert(batch[start:start + _INSERT_ROWS])
        else:
            for event in batch:
                event.save()
        _move_head(batch[-1].pk, prev, head.count + len(batch))
        for event in batch:
            metrics.count_audit_event(event)


# Rows per INSERT: well under SQLite's limit of bound parameters.
_INSERT_ROWS = 50


@functools.cache
def _insert_fields() -> tuple[Any, ...]:
    """Return the fields an INSERT of an event writes: all but the id."""
    return tuple(f for f in AuditEvent._meta.concrete_fields if not f.primary_key)


def _insert(batch: list[AuditEvent]) -> None:
    """Insert events with one plain-SQL statement and give them their ids.

    As _read_head: every audit write does this under the chain lock, and the ORM's
    statement building (bulk_create) cost more than the statement.
    """
    fields, quote = _insert_fields(), connection.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (f"INSERT INTO {quote(AuditEvent._meta.db_table)} "  # noqa: S608 - names quoted
           f"({', '.join(quote(f.column) for f in fields)}) VALUES "
           f"{', '.join([row] * len(batch))} RETURNING {quote('id')}")
    params = [f.get_db_prep_save(getattr(event, f.attname), connection)
              for event in batch for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = [r[0] for r in cursor.fetchall()]
    for event, pk in zip(batch, ids, strict=True):
        event.pk = pk
        event._state.adding, event._state.db = False, connection.alias


@dataclass(frozen=True)
class ChainBreak:
    """The first place where the chain does not hold, and why."""

    event_id: int
    reason: str


def _archived_head() -> tuple[int, str]:
    """Return the id and hash the chain continues from after the latest retention archive."""
    record = ArchiveRecord.objects.order_by("-through_id").first()
    return (record.through_id, record.last_hash) if record else (0, GENESIS)


def _rows(batch: int) -> Iterator[tuple[Any, ...]]:
    """Yield every event as a tuple, in chain order, in keyset-paginated batches."""
    last_id = 0
    while True:
        rows = list(AuditEvent.objects.filter(id__gt=last_id).order_by("id")
                    .values_list(*_FIELDS)[:batch])
        if not rows:
            return
        yield from rows
        last_id = rows[-1][0]


def verify(batch: int = 10000) -> tuple[int, ChainBreak | None]:
    """Walk the chain; return how many events were checked and the first break, if any."""
    _, expected_prev = _archived_head()
    count = 0
    last_id = 0
    for row in _rows(batch):
        count += 1
        event_id, prev_hash, stored_hash = row[0], row[12], row[13]
        if prev_hash != expected_prev:
            return count, ChainBreak(event_id, "previous-hash link broken: an event before it "
                                     "was deleted or inserted")
        if _digest(_content(*row[1:12]), prev_hash) != stored_hash:
            return count, ChainBreak(event_id, "content does not match its hash: changed")
        expected_prev, last_id = stored_hash, event_id
    head = ChainHead.objects.filter(pk=1).first()
    if head is not None and (head.last_id, head.last_hash) != (last_id, expected_prev):
        return count, ChainBreak(last_id, f"the newest events after {last_id} were deleted "
                                 f"(the chain head records event {head.last_id})")
    return count, None
