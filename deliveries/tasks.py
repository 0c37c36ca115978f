"""Celery tasks: thin wrappers that take primary keys and call one delivery service."""

from __future__ import annotations

from celery import shared_task

from deliveries import pull, routing, runner


@shared_task(name="deliveries.run_delivery", ignore_result=True)
def run_delivery(delivery_id: int) -> None:
    """Make one attempt at a push or pull delivery, if it is due and free."""
    runner.run(delivery_id)


@shared_task(name="deliveries.route_file", ignore_result=True)
def route_file(file_id: int) -> None:
    """Create the deliveries of a file that just became ready (on-arrival routes)."""
    routing.route_file(file_id)


@shared_task(name="deliveries.run_route", ignore_result=True)
def run_route(route_id: int) -> None:
    """Create the deliveries of a scheduled route (beat runs this on the route's cron)."""
    routing.run_route(route_id)


@shared_task(name="deliveries.run_pull", ignore_result=True)
def run_pull(pull_id: int) -> None:
    """List a pull's remote folder and fetch new files (beat runs this on its cron)."""
    pull.list_remote(pull_id)


@shared_task(name="deliveries.sweep", ignore_result=True)
def sweep() -> int:
    """Re-send stalled, due or lost deliveries and route files whose message was lost."""
    return runner.sweep()
