"""Carry the correlation id into Celery tasks, and give Celery the platform's log format.

A task enqueued while a request, session or task is in hand carries that id in a message
header; the worker runs the task with it (and its own task id), so the tasks it enqueues
in turn carry it too. Connected when the Celery app is imported (`mft.celery`), before the
worker starts, without touching Django models.
"""

from __future__ import annotations

import logging.config
from typing import Any

from celery import signals

from mft import correlation

HEADER = "portside_correlation_id"


@signals.before_task_publish.connect
def stamp_correlation(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Add the current correlation id to an outgoing task's headers."""
    current = correlation.current()
    if headers is not None and current and HEADER not in headers:
        headers[HEADER] = current


@signals.task_prerun.connect
def enter_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Run a task under its originating id (else its own id), with its task id."""
    origin = getattr(getattr(task, "request", None), HEADER, None)
    correlation.enter(correlation.sane(origin) or task_id, task_id=task_id)


@signals.task_postrun.connect
def leave_task(**_: Any) -> None:
    """Clear the ids after a task, so the worker's own lines are not attributed to it."""
    correlation.leave()


def _configure_logging() -> None:
    """Apply settings.LOGGING (Django's own set-up may come later) and route warnings to it."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    logging.captureWarnings(True)


@signals.setup_logging.connect
def use_platform_logging(**_: Any) -> None:
    """Configure Celery's logging from settings.LOGGING instead of Celery's own format."""
    _configure_logging()


@signals.celeryd_init.connect
def prepare_worker_output(instance: Any = None, **_: Any) -> None:
    """Log in the platform's format from the start; no multi-line banner in JSON mode."""
    from django.conf import settings

    # Celery warns (running as root, deprecated settings) right after this signal.
    _configure_logging()
    if instance is not None and settings.LOG_FORMAT == "json":
        instance.quiet = True
