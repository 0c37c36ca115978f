"""The Celery application shared by the worker, beat and every enqueuing process."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

from mft import task_context  # noqa: F401 - correlation ids and log format, before workers start

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mft.settings")

app = Celery("mft")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
@signals.task_postrun.connect
def close_old_connections(sender: Any = None, **_: Any) -> None:
    """Close this thread's database connections that are broken or past CONN_MAX_AGE.

    Called around every task a worker runs (not an eager one, which runs inside its
    caller's transaction), as Django does around a request: with CELERY_DB_REUSE_MAX set,
    Celery's fixup keeps the connections between tasks, and this keeps only sound ones.
    """
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections as close

    close()
