"""Close missing-file alerts when a matching file becomes ready (connected in ready())."""

from __future__ import annotations

from typing import Any

from transfers import signals
from transfers.models import StoredFile


def _on_ready(sender: Any, stored_file: StoredFile, **kwargs: Any) -> None:
    from expected import services

    services.record_arrival(stored_file)


def connect() -> None:
    """Connect once; the pipeline sends file_ready inside the transaction recording it."""
    signals.file_ready.connect(_on_ready, dispatch_uid="expected.file_ready")
