"""The DLP step: run the partner's rules over the plaintext; flag or block.

Findings (rule, kind, count) go to the step record and the audit log, never the matched
text. A blocking finding rejects the file and moves its bytes (still encrypted) to
quarantine for review.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from transfers import dlp, storage
from transfers.models import DlpRule, FileState, StoredFile
from transfers.pipeline_state import set_state
from transfers.step_result import StepResult


def rules_for(stored: StoredFile) -> list[dlp.Rule]:
    """Return the enabled DLP rules of the file's partner."""
    if stored.partner_id is None:
        return []
    rows = DlpRule.objects.filter(partner_id=stored.partner_id, enabled=True).order_by("id")
    return [dlp.Rule(r.name, r.kind, r.pattern or None, r.action) for r in rows]  # type: ignore[arg-type]


def run(stored: StoredFile) -> StepResult:
    """Scan the file with its partner's rules."""
    rules = rules_for(stored)
    if not rules:
        return StepResult.next("no rules")
    if stored.size > settings.PIPELINE_BATCH_BYTES:  # as scan_step: not for a small file
        set_state(stored, FileState.DLP)
    findings = dlp.scan(storage.iter_plaintext(Path(stored.storage_path)), rules)
    summary = [{"rule": f.rule, "kind": f.kind, "count": f.count} for f in findings]
    if dlp.blocking(findings, rules):
        target = storage.quarantine_dir() / f"{stored.pk}.bin"
        if Path(stored.storage_path).exists():
            os.replace(stored.storage_path, target)
        names = ", ".join(f"{f.rule} ({f.count})" for f in findings)
        return StepResult.stop("blocked", state=FileState.REJECTED,
                               reason=f"blocked by DLP rules: {names}",
                               fields={"storage_path": str(target)}, findings=summary)
    return StepResult.next("flagged" if findings else "clean", findings=summary)
