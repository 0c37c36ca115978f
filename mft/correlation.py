"""The correlation id of the work in hand: a web request, a gateway session, a task.

One context variable, so every log line of that work can carry the id (`mft.logs`) and a
Celery task enqueued during it inherits it (`mft.task_context`): one partner's upload is
followed from the gateway session to the pipeline steps in the worker by one id.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[str | None] = ContextVar("portside_correlation_id", default=None)
_task: ContextVar[str | None] = ContextVar("portside_task_id", default=None)

# What a caller-supplied id (X-Request-ID) may look like: short, and nothing that could
# forge a log line or a header.
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


def current() -> str | None:
    """Return the correlation id of the work in hand, if any."""
    return _current.get()


def current_task() -> str | None:
    """Return the id of the Celery task in hand, if any."""
    return _task.get()


def new_id() -> str:
    """Return a fresh correlation id."""
    return uuid.uuid4().hex


def sane(value: str | None) -> str | None:
    """Return a caller-supplied id when it is safe to log and echo, else None."""
    if value and _SANE.fullmatch(value):
        return value
    return None


@contextmanager
def bound(correlation_id: str | None, *, task_id: str | None = None) -> Iterator[None]:
    """Run the block with this correlation id (and task id) in effect."""
    token = _current.set(correlation_id)
    task_token = _task.set(task_id) if task_id is not None else None
    try:
        yield
    finally:
        if task_token is not None:
            _task.reset(task_token)
        _current.reset(token)


def enter(correlation_id: str | None, *, task_id: str | None = None) -> None:
    """Set the ids for the rest of this context (a task's prerun; left by `leave`)."""
    _current.set(correlation_id)
    _task.set(task_id)


def leave() -> None:
    """Clear the ids set by `enter`."""
    _current.set(None)
    _task.set(None)
