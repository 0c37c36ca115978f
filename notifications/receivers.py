"""Turn the pipeline's file signals into events, and re-seal webhook secrets after a master
key rotation (connected in NotificationsConfig.ready)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from notifications import events, services, subscriptions
from notifications.models import Subscription
from transfers import signals
from transfers.models import StoredFile


def _plan_ready(sender: Any, stored_file: StoredFile,
                **kwargs: Any) -> Callable[[StoredFile], object]:
    """Read who hears of the file becoming ready now, before the pipeline's transaction;
    record the event inside it."""
    heard_by = services.listeners(events.FILE_READY, stored_file.partner_id)
    return functools.partial(_ready, heard_by)


def _ready(heard_by: list[Subscription], stored: StoredFile) -> None:
    events.file_ready(stored, heard_by)


def _on_quarantined(sender: Any, stored_file: StoredFile, **kwargs: Any) -> None:
    events.file_quarantined(stored_file)


def _on_stopped(sender: Any, stored_file: StoredFile, reason: str = "", **kwargs: Any) -> None:
    events.file_stopped(stored_file, reason)


def _on_key_rotated(sender: Any, **kwargs: Any) -> None:
    subscriptions.reseal_secrets()


def connect() -> None:
    """Connect the receivers once; the pipeline sends the file signals inside the transaction
    that records the file's state (messages go out on commit), and plan_file_ready just
    before it."""
    signals.plan_file_ready.connect(_plan_ready, dispatch_uid="notifications.plan_ready")
    signals.file_quarantined.connect(_on_quarantined,
                                     dispatch_uid="notifications.file_quarantined")
    signals.file_stopped.connect(_on_stopped, dispatch_uid="notifications.file_stopped")
    signals.master_key_rotated.connect(_on_key_rotated, dispatch_uid="notifications.reseal")
