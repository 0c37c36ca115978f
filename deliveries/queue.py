"""Send delivery work to the workers; the database stays the record of it.

Losing a message is harmless: the sweeper re-sends work whose message went missing.
"""

from __future__ import annotations

from django.db import transaction

from mft.celery import app

RUN_DELIVERY_TASK = "deliveries.run_delivery"
ROUTE_FILE_TASK = "deliveries.route_file"


def enqueue(delivery_id: int) -> None:
    """Send the task that runs one delivery."""
    app.send_task(RUN_DELIVERY_TASK, args=[delivery_id])


def enqueue_on_commit(delivery_id: int) -> None:
    """Send the delivery's task once the surrounding transaction commits."""
    transaction.on_commit(lambda: enqueue(delivery_id))


def file_ready(file_id: int) -> None:
    """Ask a worker to route a file that just became ready (when routing it at once failed)."""
    app.send_task(ROUTE_FILE_TASK, args=[file_id])
