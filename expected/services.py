"""Expected files: configure them, check their deadlines, and close alerts on arrival.

A beat task calls `check_deadlines()` every minute or so. For each deadline that passed
(since the expectation was created, looking back `LOOKBACK`), it records a `Deadline`
row once: *met* when a matching file became ready since the previous deadline, else
*missing* — an open alert, notified (`expected_file.missing`) and audited. A matching file
that becomes ready later closes the oldest open alert as *late* (`expected_file.late`).
"""

from __future__ import annotations

import fnmatch
import posixpath
from datetime import datetime, time, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Partner
from audit import events
from audit.events import Origin
from deliveries import validation
from expected import schedule
from expected.models import WEEKDAYS, Deadline, ExpectedFile
from mft.errors import InvalidInput
from notifications import events as notices
from transfers.models import StoredFile

# Deadlines older than this are not checked any more (beat was down): no stale alerts.
LOOKBACK = timedelta(days=2)
_FIELDS = {"name", "partner", "user", "folder", "filename_pattern", "deadline", "time_zone",
           "weekdays", "enabled"}


def snapshot(expected: ExpectedFile) -> dict[str, Any]:
    """Return the audited fields of an expected file."""
    return {"name": expected.name, "partner": expected.partner_id, "user": expected.user_id,
            "folder": expected.folder, "filename_pattern": expected.filename_pattern,
            "deadline": expected.deadline.isoformat(), "time_zone": expected.time_zone,
            "weekdays": expected.weekdays, "enabled": expected.enabled}


def _weekdays(value: Any) -> list[int]:
    """Return weekday numbers (0 Monday … 6 Sunday) from numbers or names like "mon"."""
    if not isinstance(value, list) or not value:
        raise InvalidInput("weekdays must be a non-empty list, e.g. [0, 1, 2, 3, 4]")
    days = set()
    for item in value:
        name = str(item).strip().lower()[:3]
        if isinstance(item, int) and 0 <= item <= 6:
            days.add(item)
        elif name in WEEKDAYS:
            days.add(WEEKDAYS.index(name))
        else:
            raise InvalidInput(f"{item!r} is not a weekday (0-6 or mon…sun)")
    return sorted(days)


def _check(expected: ExpectedFile) -> None:
    """Normalise and refuse what cannot be checked."""
    if not expected.name.strip():
        raise InvalidInput("an expected file needs a name")
    try:
        expected.folder = validation.remote_folder(expected.folder)
        expected.filename_pattern = validation.pattern(expected.filename_pattern)
        expected.time_zone = validation.timezone_name(expected.time_zone)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    expected.weekdays = _weekdays(expected.weekdays)
    if not isinstance(expected.deadline, time):
        raise InvalidInput("deadline must be a time of day, e.g. 09:30")
    if expected.user is not None and expected.user.partner_id != expected.partner_id:
        raise InvalidInput("the user must belong to the expected partner")
    clash = ExpectedFile.objects.filter(name=expected.name).exclude(pk=expected.pk)
    if clash.exists():
        raise InvalidInput(f"an expected file named {expected.name!r} exists already")


def _apply(expected: ExpectedFile, changes: dict[str, Any]) -> None:
    unknown = sorted(set(changes) - _FIELDS)
    if unknown:
        raise InvalidInput(f"not editable: {', '.join(unknown)}")
    for name, value in changes.items():
        setattr(expected, name, value)


def create_expected(*, name: str, partner: Partner, deadline: time,
                    origin: Origin = events.SYSTEM, **fields: Any) -> ExpectedFile:
    """Expect a partner to deliver matching files by a time on given weekdays."""
    expected = ExpectedFile()
    _apply(expected, {"name": name.strip(), "partner": partner, "deadline": deadline, **fields})
    _check(expected)
    with transaction.atomic():
        expected.save()
        events.admin_change(origin=origin, action="expected_file.create", obj=expected,
                            after=snapshot(expected))
    return expected


def update_expected(expected: ExpectedFile, *, origin: Origin, **changes: Any) -> ExpectedFile:
    """Change an expected file; deadlines already checked keep their outcome."""
    with transaction.atomic():
        expected = ExpectedFile.objects.select_for_update().get(pk=expected.pk)
        before = snapshot(expected)
        _apply(expected, changes)
        _check(expected)
        expected.save()
        events.admin_change(origin=origin, action="expected_file.update", obj=expected,
                            before=before, after=snapshot(expected))
    return expected


def delete_expected(expected: ExpectedFile, *, origin: Origin) -> None:
    """Stop expecting a file; its deadline records go with it (the audit log keeps them)."""
    with transaction.atomic():
        events.admin_change(origin=origin, action="expected_file.delete", obj=expected,
                            before=snapshot(expected))
        expected.delete()


def matches(expected: ExpectedFile, stored: StoredFile) -> bool:
    """Return True when a stored file is one the expectation is waiting for."""
    if stored.partner_id != expected.partner_id:
        return False
    if expected.user_id is not None and stored.owner_id != expected.user_id:
        return False
    folder, name = posixpath.split(stored.path)
    return folder == expected.folder and fnmatch.fnmatchcase(name, expected.filename_pattern)


def arrived(expected: ExpectedFile, start: datetime, end: datetime) -> StoredFile | None:
    """Return the first matching file that became ready after `start` and by `end`."""
    rows = StoredFile.objects.filter(partner_id=expected.partner_id, ready_at__gt=start,
                                     ready_at__lte=end).order_by("ready_at", "pk")
    if expected.user_id is not None:
        rows = rows.filter(owner_id=expected.user_id)
    return next((row for row in rows.iterator() if matches(expected, row)), None)


def check_deadlines(now: datetime | None = None) -> list[Deadline]:
    """Check every deadline that passed; return the alerts raised (missing files)."""
    now = now or timezone.now()
    raised = []
    for expected in ExpectedFile.objects.filter(enabled=True).select_related("partner"):
        start = max(expected.created_at, now - LOOKBACK)
        for due in schedule.between(expected, start, now):
            deadline = check_one(expected, due, now)
            if deadline is not None and deadline.status == Deadline.Status.MISSING:
                raised.append(deadline)
    return raised


def check_one(expected: ExpectedFile, due: datetime, now: datetime) -> Deadline | None:
    """Record one passed deadline's outcome once; return it when recorded by this call."""
    found = arrived(expected, schedule.previous(expected, due), due)
    status = Deadline.Status.MET
    if found is None:
        # A file may have arrived after the deadline but before this (late) check ran.
        found = arrived(expected, due, now)
        status = Deadline.Status.MISSING if found is None else Deadline.Status.LATE
    with transaction.atomic():
        deadline, created = Deadline.objects.get_or_create(
            expected=expected, due_at=due,
            defaults={"status": status, "stored_file": found, "checked_at": now,
                      "file_path": found.path if found else "",
                      "arrived_at": found.ready_at if found else None,
                      "closed_at": now if status == Deadline.Status.LATE else None})
        if created and status != Deadline.Status.MET:
            _announce(deadline)
    return deadline if created else None


def _announce(deadline: Deadline) -> None:
    """Notify and audit a missing file, or one that arrived late (which closes its alert)."""
    details = {"due_at": deadline.due_at.isoformat(), "deadline": deadline.pk}
    if deadline.status == Deadline.Status.MISSING:
        notices.expected_file_missing(deadline)
        events.alert_raised(alert="expected_file.missing", obj=deadline.expected,
                            details=details)
        return
    notices.expected_file_late(deadline)
    assert deadline.arrived_at is not None
    events.alert_closed(alert="expected_file.late", obj=deadline.expected,
                        details={**details, "file": deadline.stored_file_id,
                                 "arrived_at": deadline.arrived_at.isoformat()})


def expectations_of(stored: StoredFile) -> list[ExpectedFile]:
    """Return the expectations a file matches."""
    if stored.partner_id is None:
        return []
    return [expected for expected in ExpectedFile.objects.filter(partner_id=stored.partner_id)
            if matches(expected, stored)]


def close_alerts(expectations: list[ExpectedFile], stored: StoredFile,
                 now: datetime | None = None) -> list[Deadline]:
    """Close the oldest open missing-file alert of each of a ready file's expectations (an
    expectation deleted meanwhile has none left)."""
    arrived_at = stored.ready_at or now or timezone.now()
    closed = []
    for expected in expectations:
        deadline = _close_oldest(expected, stored, arrived_at, now or timezone.now())
        if deadline is not None:
            closed.append(deadline)
    return closed


def _close_oldest(expected: ExpectedFile, stored: StoredFile, arrived_at: datetime,
                  now: datetime) -> Deadline | None:
    """Close the oldest open alert due before the file arrived, as late."""
    with transaction.atomic():
        deadline = (Deadline.objects.select_for_update()
                    .filter(expected=expected, status=Deadline.Status.MISSING,
                            due_at__lt=arrived_at).order_by("due_at").first())
        if deadline is None:
            return None
        deadline.status = Deadline.Status.LATE
        deadline.stored_file, deadline.file_path = stored, stored.path
        deadline.arrived_at, deadline.closed_at = arrived_at, now
        deadline.save(update_fields=["status", "stored_file", "file_path", "arrived_at",
                                     "closed_at"])
        _announce(deadline)
    return deadline


def open_alerts() -> list[Deadline]:
    """Return the missing-file alerts still open, oldest first."""
    return list(Deadline.objects.filter(status=Deadline.Status.MISSING)
                .select_related("expected", "expected__partner").order_by("due_at"))

