"""Celery task (beat, daily): a thin wrapper over applying retention."""

from __future__ import annotations

from celery import shared_task

from retention import services


@shared_task(name="retention.apply", ignore_result=True)
def apply() -> int:
    """Apply every partner's retention policy; return how many files were retired."""
    return sum(len(report.files) for report in services.apply())
