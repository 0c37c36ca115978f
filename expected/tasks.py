"""Celery task (beat, every minute): a thin wrapper over the deadline check."""

from __future__ import annotations

from celery import shared_task

from expected import services


@shared_task(name="expected.check_deadlines", ignore_result=True)
def check_deadlines() -> int:
    """Check expected files whose deadline passed; return how many alerts were raised."""
    return len(services.check_deadlines())
