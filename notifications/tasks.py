"""Celery tasks: thin wrappers that take primary keys and call one notification service."""

from __future__ import annotations

from celery import shared_task

from notifications import digest, outbox


@shared_task(name="notifications.send", ignore_result=True)
def send(notification_id: int) -> None:
    """Make one try at sending a notification, if it is due and free."""
    outbox.send(notification_id)


@shared_task(name="notifications.sweep", ignore_result=True)
def sweep() -> int:
    """Re-send notifications whose retry is due, whose lease expired or whose message was lost."""
    return outbox.sweep()


@shared_task(name="notifications.send_digests", ignore_result=True)
def send_digests() -> int:
    """Send each digest subscription its collected events as one email (beat, daily)."""
    return digest.send_digests()
