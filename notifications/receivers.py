"""Turn the pipeline's file signals into events, and re-seal webhook secrets after a master
key rotation (connected in NotificationsConfig.ready)."""

from __future__ import annotations

from typing import Any

from notifications import events, subscriptions
from transfers import signals
from transfers.models import StoredFile


def _on_ready(sender: Any, stored_file: StoredFile, **kwargs: Any) -> None:
    events.file_ready(stored_file)


def _on_quarantined(sender: Any, stored_file: StoredFile, **kwargs: Any) -> None:
    events.file_quarantined(stored_file)


def _on_stopped(sender: Any, stored_file: StoredFile, reason: str = "", **kwargs: Any) -> None:
    events.file_stopped(stored_file, reason)


def _on_key_rotated(sender: Any, **kwargs: Any) -> None:
    subscriptions.reseal_secrets()


def connect() -> None:
    """Connect the receivers once; the pipeline sends the file signals inside the transaction
    that records the file's state (messages go out on commit)."""
    signals.file_ready.connect(_on_ready, dispatch_uid="notifications.file_ready")
    signals.file_quarantined.connect(_on_quarantined,
                                     dispatch_uid="notifications.file_quarantined")
    signals.file_stopped.connect(_on_stopped, dispatch_uid="notifications.file_stopped")
    signals.master_key_rotated.connect(_on_key_rotated, dispatch_uid="notifications.reseal")
