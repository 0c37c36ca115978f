"""The antivirus step: stream the plaintext through clamd and act on the verdict.

Fail closed: no scanner, an unreachable scanner, a refused size or a limits alert all hold
the file; nothing passes unscanned unless an admin switched scanning off (MFT_SCAN=off).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from django.conf import settings

from transfers import pipeline_state, storage
from transfers.models import FileState, StoredFile
from transfers.scanning import ClamdSession, ScannerRefused, ScannerUnavailable
from transfers.step_result import StepResult


@functools.cache
def session(address: str, timeout: float) -> ClamdSession:
    """Return this process's clamd session for an address (kept open between scans)."""
    return ClamdSession(address, timeout=timeout)


def run(stored: StoredFile) -> StepResult:
    """Scan one stored file and move it to clean, infected (quarantined) or held."""
    if settings.SCAN_MODE == "off":
        return StepResult.next("skipped", reason="scanning switched off (MFT_SCAN=off)")
    if not settings.CLAMD_ADDRESS:
        return StepResult.retry("no scanner", state=FileState.HELD,
                                reason="no virus scanner configured (MFT_CLAMD unset)")
    if stored.size > settings.SCAN_MAX_BYTES:
        return _oversize(stored)
    if stored.size > settings.PIPELINE_BATCH_BYTES:
        # Shown while a large file scans; a small file's scan takes milliseconds and its
        # outcome commits with the next steps' (transfers.pipeline), so it skips this write.
        pipeline_state.set_state(stored, FileState.SCANNING)
    try:
        result = session(settings.CLAMD_ADDRESS, settings.SCAN_TIMEOUT).scan_stream(
            storage.iter_plaintext(_current_path(stored)))
    except ScannerUnavailable as exc:
        return StepResult.retry("scanner unavailable", state=FileState.HELD,
                                reason=f"virus scanner unavailable: {exc}", error=str(exc)[:200])
    except ScannerRefused as exc:
        return StepResult.retry("scanner refused", auto=False, state=FileState.HELD,
                                reason=f"virus scanner refused it: {exc}", error=str(exc)[:200])
    if result.limits_exceeded:
        return StepResult.retry(
            "limits exceeded", auto=False, state=FileState.HELD,
            reason=f"scanner limits exceeded ({result.signature}); admin review",
            signature=result.signature)
    if result.infected:
        signature = result.signature or "unknown"
        target = _quarantine(stored)
        return StepResult.stop(
            "infected", state=FileState.INFECTED, reason=f"infected: {signature}",
            fields={"scan_signature": signature[:200], "scan_engine": result.engine_version[:200],
                    "storage_path": str(target)},
            signature=signature, engine=result.engine_version)
    return StepResult.next("clean", state=FileState.CLEAN,
                           fields={"scan_engine": result.engine_version[:200],
                                   "scan_signature": ""},
                           engine=result.engine_version, bytes=result.bytes_sent)


def _oversize(stored: StoredFile) -> StepResult:
    """Apply the configured policy to a file larger than the scanner accepts."""
    limit = settings.SCAN_MAX_BYTES
    if settings.SCAN_OVERSIZE_POLICY == "reject":
        Path(stored.storage_path).unlink(missing_ok=True)
        return StepResult.stop("rejected: oversize", state=FileState.REJECTED,
                               reason=f"larger than the scan limit of {limit} bytes",
                               limit=limit)
    return StepResult.retry("oversize", auto=False, state=FileState.HELD,
                            reason=f"larger than the scan limit of {limit} bytes; admin review",
                            limit=limit)


def _current_path(stored: StoredFile) -> Path:
    """Return where the bytes are: a crash may have quarantined them before the state moved."""
    path = Path(stored.storage_path)
    moved = storage.quarantine_dir() / f"{stored.pk}.bin"
    return moved if not path.exists() and moved.exists() else path


def _quarantine(stored: StoredFile) -> Path:
    """Move an infected file out of the owner's home (idempotent); it stays encrypted."""
    source = Path(stored.storage_path)
    target = storage.quarantine_dir() / f"{stored.pk}.bin"
    if source.exists() and source != target:
        os.replace(source, target)
    return target
