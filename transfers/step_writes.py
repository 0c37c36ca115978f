"""The pipeline record's writes to its steps, in plain SQL.

The pipeline records a small file's steps in the one write transaction that holds the
embedded database's only write lock (SQLite), so the gateway landing the next upload waits
for all of it. Measured on our 2-core machines, building the ORM's statements took most of
that time: about 1.5 ms for the lease check of `confirm` (a filtered UPDATE with an EXISTS
subquery) and 0.45 ms for each step's `save(update_fields=...)`, against 0.05-0.1 ms for
running each statement (docs/PERFORMANCE.md, "Small files"). As with the audit chain's
plain-SQL head and insert, these few fixed statements are written out here; values go
through the model fields' own conversion, so both backends get what the ORM would send.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any, cast

from django.db import connection, models

from transfers.models import PipelineStep, StoredFile

# What every record of a step writes; a step taken under the batch's lease (not claimed on
# its own) also gets its attempt, lease owner and start written here.
RECORDED = ("finished_at", "outcome", "details", "lease_until", "status", "not_before")
TAKEN = ("attempts", "lease_owner", "started_at")


def _field(name: str) -> models.Field[Any, Any]:
    """Return a concrete field of PipelineStep."""
    return cast("models.Field[Any, Any]", PipelineStep._meta.get_field(name))


@cache
def _update_sql(columns: tuple[str, ...]) -> str:
    """Return `UPDATE step SET <columns> WHERE id = %s` with quoted names."""
    quote = connection.ops.quote_name
    sets = ", ".join(f"{quote(_field(name).get_attname_column()[1] or name)} = %s"
                     for name in columns)
    return (f"UPDATE {quote(PipelineStep._meta.db_table)} SET {sets} "  # noqa: S608
            f"WHERE {quote('id')} = %s")


def _prepared(step: PipelineStep, names: Sequence[str]) -> list[Any]:
    """Return the step's values for the named fields as the database takes them."""
    return [_field(name).get_db_prep_save(getattr(step, name), connection) for name in names]


def save_records(steps: Iterable[tuple[PipelineStep, bool]]) -> None:
    """Write the recorded fields of each (step, taken) pair: one statement per shape."""
    shapes: dict[tuple[str, ...], list[list[Any]]] = {}
    for step, taken in steps:
        names: tuple[str, ...] = RECORDED + TAKEN if taken else RECORDED
        shapes.setdefault(names, []).append([*_prepared(step, names), step.pk])
    with connection.cursor() as cursor:
        for names, rows in shapes.items():
            cursor.executemany(_update_sql(names), rows)


@cache
def _confirm_sql(states: int) -> str:
    """Return the lease check of `confirm`: a due pending step of a file in one of
    `states` states."""
    quote = connection.ops.quote_name
    step, stored = PipelineStep._meta, StoredFile._meta
    return (
        f"UPDATE {quote(step.db_table)} SET {quote('status')} = %s "  # noqa: S608
        f"WHERE {quote('id')} = %s AND {quote('status')} = %s "
        f"AND ({quote('not_before')} IS NULL OR {quote('not_before')} <= %s) "
        f"AND EXISTS (SELECT 1 FROM {quote(stored.db_table)} "
        f"WHERE {quote(stored.db_table)}.{quote('id')} = "
        f"{quote(step.db_table)}.{quote('stored_file_id')} "
        f"AND {quote(stored.db_table)}.{quote('state')} IN ({', '.join(['%s'] * states)}))")


def confirm(step_id: int, now: datetime, runnable_states: Sequence[str]) -> bool:
    """Move a due pending step of a runnable file to running; return whether it moved.

    The same condition as the pipeline's claim of a pending step, for a step run before its
    lease was taken (see pipeline._defers_claim).
    """
    params = [str(PipelineStep.Status.RUNNING), step_id, str(PipelineStep.Status.PENDING),
              _field("not_before").get_db_prep_save(now, connection),
              *map(str, runnable_states)]
    with connection.cursor() as cursor:
        cursor.execute(_confirm_sql(len(runnable_states)), params)
        return cursor.rowcount == 1
