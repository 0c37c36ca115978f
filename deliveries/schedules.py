"""Keep django-celery-beat's schedule in step with scheduled routes and pulls.

Beat runs with the database scheduler, so a route's cron expression becomes a
`PeriodicTask` row (named after the route) that calls the route's task with its id; a
change here is picked up by beat without a restart.
"""

from __future__ import annotations

import json

from django_celery_beat.models import CrontabSchedule, PeriodicTask

from deliveries import validation
from deliveries.models import Pull, Route

RUN_ROUTE_TASK = "deliveries.run_route"
RUN_PULL_TASK = "deliveries.run_pull"


def task_name(obj: Route | Pull) -> str:
    """Return the name of the PeriodicTask that runs a route or pull."""
    kind = "route" if isinstance(obj, Route) else "pull"
    return f"deliveries.{kind}.{obj.pk}"


def sync(obj: Route | Pull) -> PeriodicTask | None:
    """Create, update or remove the periodic task behind a route or pull; return it."""
    scheduled = isinstance(obj, Pull) or obj.trigger == Route.Trigger.SCHEDULE
    if not scheduled or not obj.cron:
        remove(obj)
        return None
    crontab, _ = CrontabSchedule.objects.get_or_create(
        timezone=obj.time_zone, **validation.cron_fields(obj.cron))
    task, _ = PeriodicTask.objects.update_or_create(
        name=task_name(obj),
        defaults={"task": RUN_ROUTE_TASK if isinstance(obj, Route) else RUN_PULL_TASK,
                  "crontab": crontab, "interval": None, "args": json.dumps([obj.pk]),
                  "enabled": obj.enabled, "description": f"Portside: {obj}"})
    if obj.periodic_task_id != task.pk:
        type(obj).objects.filter(pk=obj.pk).update(periodic_task=task)
        obj.periodic_task = task
    return task


def remove(obj: Route | Pull) -> None:
    """Delete the periodic task behind a route or pull, if any."""
    PeriodicTask.objects.filter(name=task_name(obj)).delete()
    obj.periodic_task = None
