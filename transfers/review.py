"""Admin decisions on files the pipeline stopped: release or delete, always with a reason."""

from __future__ import annotations

import os
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from audit import events
from audit.events import Origin
from mft.errors import Conflict, InvalidInput
from transfers import pipeline, uploads
from transfers.models import FileState, PipelineStep, StoredFile


def _state_of(stored: StoredFile) -> dict[str, str]:
    """Describe a file's state for an audit event's before/after."""
    return {"state": stored.state, "reason": stored.state_reason}


def _require_reason(reason: str) -> str:
    """Refuse a decision without a written reason."""
    if not reason.strip():
        raise InvalidInput("a reason is required")
    return reason.strip()[:300]


def release_quarantined(stored: StoredFile, *, reason: str, origin: Origin) -> StoredFile:
    """Put an infected file back in its owner's home (a false positive), marked ready."""
    why = _require_reason(reason)
    if stored.state != FileState.INFECTED:
        raise Conflict(f"file is {stored.state}, not quarantined")
    if stored.owner is None:
        raise Conflict("the file's owner no longer exists")
    target = Path(uploads.home_of(stored.owner)) / stored.path.lstrip("/")
    if uploads.live_file(stored.owner, stored.path) is not None or target.exists():
        raise Conflict(f"{stored.path} is taken by another file; rename or delete it first")
    before = _state_of(stored)
    with transaction.atomic():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stored.storage_path, target)
        now = timezone.now()
        StoredFile.objects.filter(pk=stored.pk).update(
            state=FileState.READY, state_reason=f"released by {origin.actor}: {why}",
            storage_path=str(target), state_changed_at=now, ready_at=now)
        stored.refresh_from_db()
        events.file_event(origin=origin, action="quarantine.release", stored_file=stored,
                          path=stored.path, details={"reason": why,
                                                     "signature": stored.scan_signature,
                                                     "before": before,
                                                     "after": _state_of(stored)})
    return stored


def delete_stopped(stored: StoredFile, *, reason: str, origin: Origin) -> None:
    """Delete a quarantined, held or rejected file and its bytes."""
    why = _require_reason(reason)
    if stored.state not in (FileState.INFECTED, FileState.HELD, FileState.REJECTED):
        raise Conflict(f"file is {stored.state}; only stopped files are deleted here")
    before = _state_of(stored)
    with transaction.atomic():
        Path(stored.storage_path).unlink(missing_ok=True)
        StoredFile.objects.filter(pk=stored.pk).update(
            state=FileState.DELETED, state_reason=f"deleted by {origin.actor}: {why}",
            state_changed_at=timezone.now())
        stored.refresh_from_db()
        events.file_event(origin=origin, action="review.delete", stored_file=stored,
                          path=stored.path, details={"reason": why, "was": before["state"],
                                                     "before": before,
                                                     "after": _state_of(stored)})


def release_held(stored: StoredFile, *, reason: str, origin: Origin) -> None:
    """Let a file held for review (oversize, scanner limits) continue without that scan."""
    why = _require_reason(reason)
    if stored.state != FileState.HELD:
        raise Conflict(f"file is {stored.state}, not held")
    with transaction.atomic():
        step = PipelineStep.objects.select_for_update().get(stored_file=stored, name="scan")
        step.status = PipelineStep.Status.DONE
        step.outcome = "released by admin"
        step.details = {**step.details, "released_by": origin.actor, "reason": why}
        step.finished_at = timezone.now()
        step.save()
        events.file_event(origin=origin, action="review.release", stored_file=stored,
                          path=stored.path, details={
                              "reason": why, "held_for": stored.state_reason,
                              "before": {**_state_of(stored), "scan": "waiting"},
                              "after": {**_state_of(stored), "scan": "released by admin"}})
        file_id = stored.pk
        transaction.on_commit(lambda: pipeline.enqueue(file_id))


def retry_now(stored: StoredFile, *, origin: Origin) -> None:
    """Retry a held file's waiting step at once (after fixing the scanner, say)."""
    with transaction.atomic():
        updated = PipelineStep.objects.filter(
            stored_file=stored, status=PipelineStep.Status.WAITING).update(not_before=None)
        if not updated:
            raise Conflict("nothing is waiting to be retried for this file")
        events.file_event(origin=origin, action="review.retry", stored_file=stored,
                          path=stored.path)
        file_id = stored.pk
        transaction.on_commit(lambda: pipeline.enqueue(file_id))


def decisions(stored: StoredFile) -> list[str]:
    """Return the review decisions open for a file: release, delete, retry (in that order)."""
    open_now = []
    if stored.state in (FileState.INFECTED, FileState.HELD):
        open_now.append("release")
    if stored.state in (FileState.INFECTED, FileState.HELD, FileState.REJECTED):
        open_now.append("delete")
    waiting = stored.steps.filter(status=PipelineStep.Status.WAITING).exists()
    if stored.state == FileState.HELD and waiting:
        open_now.append("retry")
    return open_now


def release(stored: StoredFile, *, reason: str, origin: Origin) -> None:
    """Release a quarantined file to its owner, or let a held one continue its pipeline."""
    if stored.state == FileState.INFECTED:
        release_quarantined(stored, reason=reason, origin=origin)
    else:
        release_held(stored, reason=reason, origin=origin)
