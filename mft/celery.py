"""The Celery application shared by the worker, beat and every enqueuing process."""

from __future__ import annotations

import os

from celery import Celery

from mft import task_context  # noqa: F401 - correlation ids and log format, before workers start

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mft.settings")

app = Celery("mft")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
