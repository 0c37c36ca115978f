"""Send notification work to the workers; the database stays the record of it.

A lost message is harmless: the sweeper re-sends notifications whose message went missing.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from mft.celery import app

SEND_TASK = "notifications.send"


def enqueue(notification_id: int) -> None:
    """Send the task that sends one notification."""
    app.send_task(SEND_TASK, args=[notification_id])


def enqueue_on_commit(notification_ids: Iterable[int]) -> None:
    """Send the notifications' tasks once the surrounding transaction commits."""
    ids = list(notification_ids)

    def send_all() -> None:
        for notification_id in ids:
            enqueue(notification_id)

    # robust: a broker hiccup must not fail the caller's committed work; the sweeper
    # re-sends what was not enqueued.
    if ids:
        transaction.on_commit(send_all, robust=True)
