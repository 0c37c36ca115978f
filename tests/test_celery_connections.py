"""A worker keeps its database connection between tasks (Celery's fixup would close it
around each one) and closes it only when it is past CONN_MAX_AGE or broken, as Django does
around a request."""

from __future__ import annotations

import time

import pytest
from celery import signals
from django.db import connection

from transfers.tasks import run_pipeline

pytestmark = pytest.mark.django_db(transaction=True)


def around_a_task() -> None:
    """Send what a worker sends before and after running a task."""
    signals.task_prerun.send(sender=run_pipeline, task_id="t1", task=run_pipeline,
                             args=(0,), kwargs={})
    signals.task_postrun.send(sender=run_pipeline, task_id="t1", task=run_pipeline,
                              args=(0,), kwargs={}, retval=None, state="SUCCESS")


def test_celery_keeps_the_database_connection_between_tasks(settings):
    from mft.celery import app

    assert app.conf.get("CELERY_DB_REUSE_MAX")  # else Celery's fixup closes it per task
    connection.ensure_connection()
    connection.close_at = time.monotonic() + 60
    opened = connection.connection
    around_a_task()
    assert connection.connection is opened


def test_celery_closes_a_connection_past_its_max_age_between_tasks(settings):
    connection.ensure_connection()
    connection.close_at = time.monotonic() - 1
    around_a_task()
    assert connection.connection is None


def test_celery_closes_a_connection_left_outside_autocommit_between_tasks(settings):
    connection.ensure_connection()
    connection.close_at = time.monotonic() + 60
    connection.set_autocommit(False)  # what a task killed inside a transaction leaves
    around_a_task()
    assert connection.connection is None
