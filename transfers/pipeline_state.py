"""Move a stored file between pipeline states."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from transfers.models import LIVE_STATES, StoredFile


def set_state(stored: StoredFile, state: str, reason: str = "", **fields: Any) -> bool:
    """Move a live file to a new state (a deleted or replaced file is left alone); return
    whether its row moved."""
    now = timezone.now()
    moved = StoredFile.objects.filter(pk=stored.pk, state__in=LIVE_STATES).update(
        state=state, state_reason=reason[:500], state_changed_at=now, **fields) == 1
    stored.state, stored.state_reason, stored.state_changed_at = state, reason[:500], now
    # The pipeline keeps the row between steps: the next step must see the new size or path.
    for name, value in fields.items():
        setattr(stored, name, value)
    return moved
