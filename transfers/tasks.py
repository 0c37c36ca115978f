"""Celery tasks: thin wrappers that reload by primary key and call one service."""

from __future__ import annotations

from celery import shared_task

from transfers import pipeline, quota


@shared_task(name="transfers.run_pipeline", ignore_result=True)
def run_pipeline(file_id: int) -> None:
    """Advance one file through its due pipeline steps."""
    pipeline.advance(file_id)


@shared_task(name="transfers.sweep_pipeline", ignore_result=True)
def sweep_pipeline() -> int:
    """Re-enqueue stalled or due pipeline steps and drop stale quota claims."""
    quota.sweep_stale()
    return pipeline.sweep()
