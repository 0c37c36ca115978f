"""Close missing-file alerts when a matching file becomes ready (connected in ready())."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from transfers import signals
from transfers.models import StoredFile


def _plan_ready(sender: Any, stored_file: StoredFile,
                **kwargs: Any) -> Callable[[StoredFile], object] | None:
    """Read the expectations a file about to be ready matches, before the pipeline's
    transaction; close their alerts inside it."""
    from expected import services

    expectations = services.expectations_of(stored_file)
    if not expectations:
        return None
    return functools.partial(services.close_alerts, expectations)


def connect() -> None:
    """Connect once; the pipeline sends plan_file_ready just before the transaction
    recording the file ready, and makes the write returned in it."""
    signals.plan_file_ready.connect(_plan_ready, dispatch_uid="expected.plan_ready")
