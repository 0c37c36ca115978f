"""Celery tasks (beat, hourly): thin wrappers over the alert checks."""

from __future__ import annotations

from celery import shared_task

from alerts import expiry, posture_watch


@shared_task(name="alerts.check_expiry", ignore_result=True)
def check_expiry() -> int:
    """Announce certificates and keys that crossed an expiry threshold."""
    return expiry.check()


@shared_task(name="alerts.check_posture", ignore_result=True)
def check_posture() -> int:
    """Announce new unaccepted posture findings."""
    return len(posture_watch.check())
