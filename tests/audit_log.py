"""Read the audit log from tests: the gateway writes events in the background, so wait for
them (bounded) instead of sleeping a fixed time."""

from __future__ import annotations

from typing import Any

from audit.models import AuditEvent
from tests.waiting import until

DEFAULT_WAIT = 10.0


def wait_for_event(*, timeout: float = DEFAULT_WAIT, **filters: Any) -> AuditEvent:
    """Return the first event matching the filters, polling until it appears."""
    return until(lambda: AuditEvent.objects.filter(**filters).order_by("id").first(),
                 timeout=timeout, what=f"an audit event matching {filters}")


def wait_for_count(count: int, *, timeout: float = DEFAULT_WAIT,
                   **filters: Any) -> list[AuditEvent]:
    """Return the events matching the filters once there are at least `count` of them."""
    def probe() -> list[AuditEvent]:
        events = list(AuditEvent.objects.filter(**filters).order_by("id"))
        return events if len(events) >= count else []

    return until(probe, timeout=timeout, what=f"{count} audit events matching {filters}")
