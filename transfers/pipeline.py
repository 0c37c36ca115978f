"""The file pipeline: scan → DLP → ready, as database rows with leases.

The database, not the broker, is the record of work: each step is a row; a worker claims it
with a lease; a step found done, or leased by a live worker, is left alone; the sweeper
re-enqueues steps whose lease expired or whose retry time came, so a killed worker's step is
redone (with the same result), never skipped or doubled.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit import events
from mft.celery import app
from transfers import dlp_step, pgp_step, scan_step, signals
from transfers.models import LIVE_STATES, FileState, PipelineStep, StoredFile
from transfers.pipeline_state import set_state
from transfers.step_result import StepResult

log = logging.getLogger(__name__)

STEPS = ("decrypt", "scan", "dlp", "finish")
RUN_TASK = "transfers.run_pipeline"


def start(stored: StoredFile) -> None:
    """Create the file's steps and enqueue it once the surrounding transaction commits."""
    PipelineStep.objects.filter(stored_file=stored).delete()
    PipelineStep.objects.bulk_create(PipelineStep(stored_file=stored, name=n) for n in STEPS)
    events.pipeline_step(stored_file=stored, step="received", outcome=events.INFO,
                         details={"size": stored.size, "sha256": stored.sha256})
    file_id = stored.pk
    transaction.on_commit(lambda: enqueue(file_id))


def enqueue(file_id: int, countdown: float | None = None) -> None:
    """Send the run task for a file; losing the message is harmless (the sweeper resends)."""
    app.send_task(RUN_TASK, args=[file_id], countdown=countdown)


def worker_name() -> str:
    """Return a name for this process, recorded as a lease's owner."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _claim(step: PipelineStep) -> bool:
    """Take the step's lease if it is due and not leased by a live worker."""
    now = timezone.now()
    due = Q(status__in=[PipelineStep.Status.PENDING, PipelineStep.Status.WAITING]) & (
        Q(not_before__isnull=True) | Q(not_before__lte=now))
    expired = Q(status=PipelineStep.Status.RUNNING, lease_until__lt=now)
    claimed = PipelineStep.objects.filter(Q(pk=step.pk) & (due | expired)).update(
        status=PipelineStep.Status.RUNNING, lease_owner=worker_name(),
        lease_until=now + timedelta(seconds=settings.PIPELINE_LEASE_SECONDS),
        attempts=F("attempts") + 1, started_at=now)
    return claimed == 1


def advance(file_id: int) -> None:
    """Run the file's due steps in order until one waits, stops the file, or all are done."""
    while True:
        stored = StoredFile.objects.filter(pk=file_id).first()
        if stored is None or stored.state not in LIVE_STATES or stored.state == FileState.PARTIAL:
            return
        step = stored.steps.exclude(status=PipelineStep.Status.DONE).order_by("id").first()
        if step is None or not _claim(step):
            return
        result = _run(step, stored)
        _record(step, stored, result)
        if result.kind != StepResult.NEXT:
            return


def _run(step: PipelineStep, stored: StoredFile) -> StepResult:
    """Run one step; an unexpected error waits for a retry instead of losing the file."""
    handler: Callable[[StoredFile], StepResult] = _HANDLERS[step.name]
    try:
        return handler(stored)
    except Exception as exc:
        log.exception("pipeline step %s failed for file %s", step.name, stored.pk)
        return StepResult.retry(f"{type(exc).__name__}: {exc}"[:300])


def _record(step: PipelineStep, stored: StoredFile, result: StepResult) -> None:
    """Store the step's outcome, timing and the file's new state, and audit it, at once."""
    with transaction.atomic():
        if result.state is not None:
            set_state(stored, result.state, result.reason, **result.fields)
        _record_step(step, stored, result)
        if result.state is not None:
            file_id = stored.pk
            transaction.on_commit(lambda: _announce(file_id, result))


def _announce(file_id: int, result: StepResult) -> None:
    """Tell other apps (deliveries, notifications) about a committed state change."""
    stored = StoredFile.objects.filter(pk=file_id).first()
    if stored is None:
        return
    if result.state == FileState.READY:
        replies = signals.file_ready.send_robust(sender=StoredFile, stored_file=stored)
    elif result.state == FileState.INFECTED:
        replies = signals.file_quarantined.send_robust(sender=StoredFile, stored_file=stored)
    elif result.state in (FileState.HELD, FileState.REJECTED):
        replies = signals.file_stopped.send_robust(sender=StoredFile, stored_file=stored,
                                                   reason=result.reason)
    else:
        return
    # A failing receiver must not undo or repeat the pipeline; it records its own work.
    for receiver, reply in replies:
        if isinstance(reply, Exception):
            log.error("receiver %s failed for file %s", receiver, file_id, exc_info=reply)


def _record_step(step: PipelineStep, stored: StoredFile, result: StepResult) -> None:
    """Store the step's outcome and timing, and audit it."""
    now = timezone.now()
    started = step.started_at or now
    step.refresh_from_db()
    step.finished_at = now
    step.outcome = result.outcome[:40]
    step.details = {**result.details, "seconds": round((now - started).total_seconds(), 3)}
    step.lease_until = None
    if result.kind == StepResult.RETRY:
        step.status = PipelineStep.Status.WAITING
        delay = min(settings.PIPELINE_RETRY_MAX, 5 * 2 ** min(step.attempts, 10))
        step.not_before = now + timedelta(seconds=delay) if result.auto_retry else None
    else:
        step.status = PipelineStep.Status.DONE
    step.save()
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
