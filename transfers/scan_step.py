"""The antivirus step: stream the plaintext through clamd and act on the verdict.

Fail closed: no scanner, an unreachable scanner, a refused size or a limits alert all hold
the file; nothing passes unscanned unless an admin switched scanning off (MFT_SCAN=off).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import transaction

from transfers import pipeline_state, storage
from transfers.models import FileState, StoredFile
from transfers.scanning import ClamdClient, ScannerRefused, ScannerUnavailable
from transfers.step_result import StepResult

_READ = 1024 * 1024


def _plaintext(path: Path) -> Iterator[bytes]:
    """Yield the stored file's plaintext in chunks."""
    reader = storage.open_reader(path)
    try:
        while block := reader.read(_READ):
            yield block
    finally:
        reader.close()


def run(stored: StoredFile) -> StepResult:
    """Scan one stored file and move it to clean, infected (quarantined) or held."""
    if settings.SCAN_MODE == "off":
        return StepResult.next("skipped", reason="scanning switched off (MFT_SCAN=off)")
    if not settings.CLAMD_ADDRESS:
        pipeline_state.set_state(stored, FileState.HELD, "no virus scanner configured "
                                 "(MFT_CLAMD unset)")
        return StepResult.retry("no scanner")
    if stored.size > settings.SCAN_MAX_BYTES:
        return _oversize(stored)
    pipeline_state.set_state(stored, FileState.SCANNING)
    try:
        result = ClamdClient(settings.CLAMD_ADDRESS, timeout=settings.SCAN_TIMEOUT).scan_stream(
            _plaintext(Path(stored.storage_path)))
    except ScannerUnavailable as exc:
        pipeline_state.set_state(stored, FileState.HELD, f"virus scanner unavailable: {exc}")
        return StepResult.retry("scanner unavailable", error=str(exc)[:200])
    except ScannerRefused as exc:
        pipeline_state.set_state(stored, FileState.HELD, f"virus scanner refused it: {exc}")
        return StepResult.retry("scanner refused", auto=False, error=str(exc)[:200])
    if result.limits_exceeded:
        pipeline_state.set_state(stored, FileState.HELD,
                                 f"scanner limits exceeded ({result.signature}); admin review")
        return StepResult.retry("limits exceeded", auto=False, signature=result.signature)
    if result.infected:
        _quarantine(stored, result.signature or "unknown", result.engine_version)
        return StepResult.stop("infected", signature=result.signature,
                               engine=result.engine_version)
    pipeline_state.set_state(stored, FileState.CLEAN, scan_engine=result.engine_version,
                             scan_signature="")
    return StepResult.next("clean", engine=result.engine_version, bytes=result.bytes_sent)


def _oversize(stored: StoredFile) -> StepResult:
    """Apply the configured policy to a file larger than the scanner accepts."""
    limit = settings.SCAN_MAX_BYTES
    if settings.SCAN_OVERSIZE_POLICY == "reject":
        Path(stored.storage_path).unlink(missing_ok=True)
        pipeline_state.set_state(stored, FileState.REJECTED,
                                 f"larger than the scan limit of {limit} bytes")
        return StepResult.stop("rejected: oversize", limit=limit)
    pipeline_state.set_state(stored, FileState.HELD,
                             f"larger than the scan limit of {limit} bytes; admin review")
    return StepResult.retry("oversize", auto=False, limit=limit)


def _quarantine(stored: StoredFile, signature: str, engine: str) -> None:
    """Move an infected file out of the owner's home; it stays encrypted at rest."""
    source = Path(stored.storage_path)
    target = storage.quarantine_dir() / f"{stored.pk}.bin"
    with transaction.atomic():
        if source.exists():
            os.replace(source, target)
        pipeline_state.set_state(stored, FileState.INFECTED, f"infected: {signature}",
                                 scan_signature=signature[:200], scan_engine=engine[:200],
                                 storage_path=str(target))
