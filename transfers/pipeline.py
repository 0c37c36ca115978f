"""The file pipeline: scan → DLP → ready, as database rows with leases.

The database, not the broker, is the record of work: each step is a row; a worker claims it
with a lease; a step found done, or leased by a live worker, is left alone; the sweeper
re-enqueues steps whose lease expired or whose retry time came, so a killed worker's step is
redone (with the same result), never skipped or doubled.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from audit import chain, events
from mft.celery import app
from transfers import dlp_step, pgp_step, scan_step, signals, step_writes
from transfers.models import LIVE_STATES, FileState, PipelineStep, StoredFile
from transfers.pipeline_state import set_state
from transfers.step_result import StepResult

log = logging.getLogger(__name__)

STEPS = ("decrypt", "scan", "dlp", "finish")
RUN_TASK = "transfers.run_pipeline"
# Steps whose outcome changed the stored bytes: recorded at once, never held for a batch,
# so a redo after a crash never sees the decrypted bytes as an unencrypted upload.
_REWRITES_BYTES = {("decrypt", "decrypted")}
# A partial upload is live but not yet the pipeline's to run.
_RUNNABLE_STATES = [s for s in LIVE_STATES if s != FileState.PARTIAL]
# What a receiver of signals.plan_file_ready returns: its writes, made in the record.
Write = Callable[[StoredFile], object]


def start(stored: StoredFile, *, new: bool = False) -> None:
    """Create the file's steps and enqueue it once the surrounding transaction commits.

    `new`: the row was created in this transaction, so it has no old steps to clear.
    """
    if not new:
        PipelineStep.objects.filter(stored_file=stored).delete()
    PipelineStep.objects.bulk_create(PipelineStep(stored_file=stored, name=n) for n in STEPS)
    events.pipeline_step(stored_file=stored, step="received", outcome=events.INFO,
                         details={"size": stored.size, "sha256": stored.sha256})
    file_id = stored.pk
    transaction.on_commit(lambda: _publish(file_id))


# Run messages kept back by held_sends() in this context, or None: send at once.
_held: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "pipeline_held_sends", default=None)


@contextmanager
def held_sends() -> Iterator[list[int]]:
    """Keep the run messages of transactions committed inside, for the caller to send later.

    The FTPS gateway finishes an upload inside this and sends the messages (send_held) after
    its 226: the client waits for the fsync and the commit, not for the broker too. A
    message never sent (the process died between the two) is resent by the sweeper.
    """
    held: list[int] = []
    token = _held.set(held)
    try:
        yield held
    finally:
        _held.reset(token)


def send_held(file_ids: list[int]) -> None:
    """Send run messages kept back by held_sends()."""
    for file_id in file_ids:
        enqueue(file_id)


def _publish(file_id: int) -> None:
    """Send a committed file's run message now, or keep it for held_sends()' caller."""
    held = _held.get()
    if held is None:
        enqueue(file_id)
    else:
        held.append(file_id)


def enqueue(file_id: int, countdown: float | None = None) -> None:
    """Send the run task for a file; losing the message is harmless (the sweeper resends)."""
    app.send_task(RUN_TASK, args=[file_id], countdown=countdown)


def worker_name() -> str:
    """Return a name for this process, recorded as a lease's owner."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _live() -> Exists:
    """Select steps whose file is live and runnable (not deleted, replaced or partial)."""
    return Exists(StoredFile.objects.filter(pk=OuterRef("stored_file_id"),
                                            state__in=_RUNNABLE_STATES))


def _claim(step: PipelineStep) -> bool:
    """Take the step's lease if it is due, not leased by a live worker, and its file is live."""
    now = timezone.now()
    due = Q(status__in=[PipelineStep.Status.PENDING, PipelineStep.Status.WAITING]) & (
        Q(not_before__isnull=True) | Q(not_before__lte=now))
    expired = Q(status=PipelineStep.Status.RUNNING, lease_until__lt=now)
    owner = worker_name()
    lease_until = now + timedelta(seconds=settings.PIPELINE_LEASE_SECONDS)
    claimed = PipelineStep.objects.filter(Q(pk=step.pk) & (due | expired) & _live()).update(
        status=PipelineStep.Status.RUNNING, lease_owner=owner, lease_until=lease_until,
        attempts=F("attempts") + 1, started_at=now)
    if claimed != 1:
        return False
    # What the UPDATE wrote, so the step's record needs no read back (attempts is read
    # back only for a retry's back-off: another worker may have counted attempts since).
    step.status, step.lease_owner = PipelineStep.Status.RUNNING, owner
    step.lease_until, step.started_at = lease_until, now
    return True


def _defers_claim(stored: StoredFile, first: PipelineStep) -> bool:
    """Return whether a small file's first step can run before its lease is taken.

    The lease is then taken in the transaction that records the steps (_confirm): one
    write transaction per small file instead of two. Running without a lease is safe where
    a duplicate run changes nothing another run relies on: a pending step, a small file
    (a redo costs milliseconds) and no decryption (which replaces the bytes). A duplicate
    run records nothing: its _confirm finds the step taken.
    """
    now = timezone.now()
    return (stored.size <= settings.PIPELINE_BATCH_BYTES
            and first.status == PipelineStep.Status.PENDING
            and (first.not_before is None or first.not_before <= now)
            and not (first.name == "decrypt" and pgp_step.may_rewrite(stored)))


def _confirm(step: PipelineStep) -> bool:
    """Take the lease of a first step run before it was claimed, in the transaction that
    records it; return False if another worker took or finished the step meanwhile."""
    return step_writes.confirm(step.pk, timezone.now(), _RUNNABLE_STATES)


def advance(file_id: int) -> None:
    """Run the file's due steps in order until one waits, stops the file, or all are done.

    Each step's outcome, its audit event and the lease of the next step commit in one
    transaction, so a worker killed between two steps leaves the next one leased: the
    sweeper hands it on when the lease expires. A small file's steps run together and
    commit together (see _holds_on), with the first step's lease taken in that same
    transaction (see _defers_claim): one write transaction and one audit chain append per
    file instead of one per step; a worker killed before that commit has its steps redone
    (its message is redelivered, else the sweeper resends it), none recorded twice.
    """
    stored = StoredFile.objects.filter(pk=file_id).select_related("partner").first()
    if stored is None or stored.state not in _RUNNABLE_STATES:
        return
    pending = [s for s in stored.steps.order_by("id") if s.status != PipelineStep.Status.DONE]
    if not pending:
        return
    unconfirmed = pending[0] if _defers_claim(stored, pending[0]) else None
    if unconfirmed is not None:
        _take(unconfirmed)
    elif not _claim(pending[0]):
        return
    ran: list[tuple[PipelineStep, StepResult]] = []
    for index, step in enumerate(pending):
        if index > 0 and not ran:
            stored = _reload(file_id)  # a rename moves its bytes
            if stored is None:
                return
        if ran:
            _take(step)
        result = _run(step, stored)
        step.finished_at = timezone.now()
        ran.append((step, result))
        following = pending[index + 1] if index + 1 < len(pending) else None
        if _holds_on(stored, step, result, following):
            continue
        if not _record(ran, stored, following, unconfirmed, _plan(stored, ran)):
            return
        ran, unconfirmed = [], None


def _reload(file_id: int) -> StoredFile | None:
    """Read the file's row again, with its partner, after a committed step."""
    return StoredFile.objects.filter(pk=file_id).select_related("partner").first()


def _holds_on(stored: StoredFile, step: PipelineStep, result: StepResult,
              following: PipelineStep | None) -> bool:
    """Return whether the step's record can wait to commit with the following step's.

    Only for a small file (a redo costs milliseconds), a step that goes on and left its
    bytes as they were, and a following step nobody else can hold: it is pending, and a
    file's steps are taken in order, so no one takes it before the first, whose record
    commits only while it is ours (claimed, or taken by _confirm in that commit).
    """
    return (stored.size <= settings.PIPELINE_BATCH_BYTES and result.kind == StepResult.NEXT
            and (step.name, result.outcome) not in _REWRITES_BYTES and following is not None
            and following.status == PipelineStep.Status.PENDING)


def _take(step: PipelineStep) -> None:
    """Hold a pending step under the batch's lease; its record counts the attempt."""
    step.status, step.lease_owner = PipelineStep.Status.RUNNING, worker_name()
    step.started_at = timezone.now()
    step.attempts += 1  # as read by advance: no one else writes a step behind our lease


def _run(step: PipelineStep, stored: StoredFile) -> StepResult:
    """Run one step; an unexpected error waits for a retry instead of losing the file."""
    handler: Callable[[StoredFile], StepResult] = _HANDLERS[step.name]
    try:
        return handler(stored)
    except Exception as exc:
        log.exception("pipeline step %s failed for file %s", step.name, stored.pk)
        return StepResult.retry(f"{type(exc).__name__}: {exc}"[:300])


def _plan(stored: StoredFile, ran: list[tuple[PipelineStep, StepResult]]) -> list[Write]:
    """Return the writes other apps make when these steps end with the file ready, read
    before the transaction that records them (see signals.plan_file_ready)."""
    named = _named_state([result for _, result in ran])
    if named is None or named.state != FileState.READY:
        return []
    writes = []
    for receiver, reply in signals.plan_file_ready.send_robust(sender=StoredFile,
                                                               stored_file=stored):
        if isinstance(reply, Exception):
            log.error("planner %s failed for file %s", receiver, stored.pk, exc_info=reply)
        elif reply is not None:
            writes.append(reply)
    return writes


def _record(ran: list[tuple[PipelineStep, StepResult]], stored: StoredFile,
            following: PipelineStep | None, unconfirmed: PipelineStep | None = None,
            writes: list[Write] | None = None) -> bool:
    """Store the outcomes of the steps run since the last record, their timing, the file's
    new state and their audit events, and lease the following step, at once; return
    whether the following step is ours to run.

    The first step was claimed, or is `unconfirmed` (run before its lease, see
    _defers_claim): then nothing is recorded unless _confirm takes it here. The others were
    taken under its lease (_take). `writes`: what other apps planned for the file becoming
    ready (_plan).
    """
    last = ran[-1][1]
    with transaction.atomic():
        if unconfirmed is not None and not _confirm(unconfirmed):
            return False  # another worker took or finished it: its record stands
        changed = _set_states(stored, [result for _, result in ran])
        taken = [index > 0 or unconfirmed is not None for index in range(len(ran))]
        for (step, result), step_taken in zip(ran, taken, strict=True):
            _settle(step, result, taken=step_taken)
        step_writes.save_records((step, step_taken)
                                 for (step, _), step_taken in zip(ran, taken, strict=True))
        with chain.appended_together():
            for step, result in ran:
                _audit_step(step, stored, result)
        claimed = (last.kind == StepResult.NEXT and following is not None
                   and _claim(following))
        if changed is not None:
            _announce(stored, changed, writes or [])
    return claimed


def _named_state(results: list[StepResult]) -> StepResult | None:
    """Return the last of the results that names a state, or None."""
    named = [result for result in results if result.state is not None]
    return named[-1] if named else None


def _set_states(stored: StoredFile, results: list[StepResult]) -> StepResult | None:
    """Move the file to the last state the results name, with all their fields, in one
    write; return the result that named it, or None (also when the file was deleted or
    replaced meanwhile: nobody is told about a file that is gone)."""
    last = _named_state(results)
    if last is None or last.state is None:
        return None
    fields = dict[str, Any]()
    for result in results:
        if result.state is not None:
            fields.update(result.fields)
    return last if set_state(stored, last.state, last.reason, **fields) else None


def _announce(stored: StoredFile, result: StepResult, writes: list[Write]) -> None:
    """Tell other apps (deliveries, notifications) about a state change, inside the
    transaction that records it: for a file now ready, make the writes they planned
    (`writes`), then send the signal.

    Their rows (deliveries, the `file.ready` event) commit with the file's new state or not
    at all, in the one write transaction, and they send their messages after that commit.
    The row as the record wrote it (with its partner), in the state this transaction
    gave it: receivers need not read it again.
    """
    if result.state == FileState.READY:
        signal, extra = signals.file_ready, dict[str, str]()
    elif result.state == FileState.INFECTED:
        signal, extra = signals.file_quarantined, {}
    elif result.state in (FileState.HELD, FileState.REJECTED):
        signal, extra = signals.file_stopped, {"reason": result.reason}
    else:
        return
    if result.state == FileState.READY:
        for write in writes:
            _write_robustly(write, stored)
    # A failing receiver must not undo or repeat the pipeline: its savepoint is rolled
    # back and logged, the step's record commits (routing's sweeper catches up).
    try:
        with transaction.atomic():
            replies = signal.send_robust(sender=StoredFile, stored_file=stored, **extra)
    except DatabaseError:
        log.exception("receivers of %s left the transaction broken for file %s",
                      result.state, stored.pk)
        return
    for receiver, reply in replies:
        if isinstance(reply, Exception):
            log.error("receiver %s failed for file %s", receiver, stored.pk, exc_info=reply)


def _write_robustly(write: Write, stored: StoredFile) -> None:
    """Make one planned write in a savepoint; a failing one is rolled back and logged, as a
    failing receiver is, and the record commits without it."""
    try:
        with transaction.atomic():
            write(stored)
    except Exception:
        log.exception("planned write %r failed for file %s", write, stored.pk)


def _settle(step: PipelineStep, result: StepResult, *, taken: bool = False) -> None:
    """Set the step's outcome, timing and status from its result, for step_writes to store
    (taken: its attempt, lease owner and start are stored with them, not by a claim)."""
    now = step.finished_at or timezone.now()
    started = step.started_at or now
    step.finished_at = now
    step.outcome = result.outcome[:40]
    step.details = {**result.details, "seconds": round((now - started).total_seconds(), 3)}
    step.lease_until = None
    if result.kind == StepResult.RETRY:
        step.status = PipelineStep.Status.WAITING
        if not taken:
            step.refresh_from_db(fields=["attempts"])
        delay = min(settings.PIPELINE_RETRY_MAX, 5 * 2 ** min(step.attempts, 10))
        step.not_before = now + timedelta(seconds=delay) if result.auto_retry else None
    else:
        step.status = PipelineStep.Status.DONE


def _audit_step(step: PipelineStep, stored: StoredFile, result: StepResult) -> None:
    """Record the step's outcome in the audit chain."""
    outcome = events.FAILURE if result.kind == StepResult.RETRY else events.SUCCESS
    if result.kind == StepResult.STOP:
        outcome = events.FAILURE
    events.pipeline_step(stored_file=stored, step=step.name, outcome=outcome,
                         details={"outcome": result.outcome, **result.details})


def _finish(stored: StoredFile) -> StepResult:
    """Mark the file ready for everyone downstream."""
    return StepResult.next("ready", state=FileState.READY, fields={"ready_at": timezone.now()})


_HANDLERS: dict[str, Callable[[StoredFile], StepResult]] = {
    "decrypt": pgp_step.run,
    "scan": scan_step.run,
    "dlp": dlp_step.run,
    "finish": _finish,
}


def sweep() -> int:
    """Re-enqueue files whose step lease expired, whose retry is due, or whose message was
    lost; return how many."""
    now = timezone.now()
    stale_pending = now - timedelta(seconds=settings.PIPELINE_PENDING_GRACE)
    due = PipelineStep.objects.filter(
        Q(status=PipelineStep.Status.RUNNING, lease_until__lt=now)
        | Q(status=PipelineStep.Status.WAITING, not_before__lte=now)
        | Q(status=PipelineStep.Status.PENDING, stored_file__state_changed_at__lt=stale_pending)
    ).values_list("stored_file_id", flat=True).distinct()
    file_ids = list(due[:1000])
    for file_id in file_ids:
        enqueue(file_id)
    return len(file_ids)


def stuck_files(older_than_seconds: int) -> list[StoredFile]:
    """Return live files that have not reached a final state for longer than the threshold."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    unfinished = [FileState.RECEIVED, FileState.DECRYPTING, FileState.SCANNING, FileState.HELD,
                  FileState.CLEAN, FileState.DLP]
    return list(StoredFile.objects.filter(state__in=unfinished, state_changed_at__lt=cutoff)
                .order_by("state_changed_at")[:1000])
