"""Apply each partner's retention policy: retire old files, delete old delivery records.

Files: only files in a final state (ready, rejected, infected) whose last state change is
older than the policy's days, and — for ready files — only once every enabled route that
takes them has a finished delivery. A file still in the pipeline, held for an admin, or
waiting for a delivery is never touched. The row is kept (state `deleted`, the reason
says retention and where an archived copy went), so receipts and the audit trail still
resolve; the bytes are deleted or moved to the archive. Deleted rows no longer count
against quotas.

Delivery records: finished deliveries (delivered, failed, cancelled) older than the days,
with their attempts; a delivery that a newer re-send points at waits for the re-send.

`apply(dry_run=True)` reports the same selection and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import Partner
from audit import events
from audit.events import Origin
from deliveries import routing
from deliveries.models import Delivery, DeliveryAttempt, Route
from mft.errors import InvalidInput
from retention import archive
from retention.models import RetentionPolicy
from transfers.models import FileState, StoredFile

FINAL_FILE_STATES = (FileState.READY, FileState.REJECTED, FileState.INFECTED)
FINAL_DELIVERY_STATES = (Delivery.Status.DELIVERED, Delivery.Status.FAILED,
                         Delivery.Status.CANCELLED)


@dataclass
class PartnerReport:
    """What one partner's policy retired (or, in a dry run, would retire)."""

    partner: str
    action: str
    files: list[StoredFile] = field(default_factory=list)
    file_bytes: int = 0
    deliveries: int = 0
    attempts: int = 0

    def as_details(self) -> dict[str, Any]:
        """Return the report as audit details."""
        return {"action": self.action, "files": len(self.files), "bytes": self.file_bytes,
                "file_ids": [f.pk for f in self.files][:1000],
                "deliveries": self.deliveries, "attempts": self.attempts}


def set_policy(partner: Partner, *, files_after_days: int | None,
               files_action: str = RetentionPolicy.Action.DELETE,
               deliveries_after_days: int | None = None,
               origin: Origin = events.SYSTEM) -> RetentionPolicy:
    """Set a partner's retention policy (blank day counts keep forever)."""
    if files_action not in RetentionPolicy.Action.values:
        raise InvalidInput("files_action must be delete or archive")
    for days in (files_after_days, deliveries_after_days):
        if days is not None and days < 1:
            raise InvalidInput("retention is at least one day")
    with transaction.atomic():
        policy, _ = RetentionPolicy.objects.get_or_create(partner=partner)
        before = _snapshot(policy)
        policy.files_after_days, policy.files_action = files_after_days, files_action
        policy.deliveries_after_days = deliveries_after_days
        policy.updated_at = timezone.now()
        policy.save()
        events.admin_change(origin=origin, action="retention.policy", obj=partner,
                            before=before, after=_snapshot(policy))
    return policy


def remove_policy(policy: RetentionPolicy, *, origin: Origin) -> None:
    """Remove a partner's policy: its files and delivery records are kept forever again."""
    with transaction.atomic():
        events.admin_change(origin=origin, action="retention.policy", obj=policy.partner,
                            before=_snapshot(policy), after={})
        policy.delete()


def _snapshot(policy: RetentionPolicy) -> dict[str, Any]:
    return {"files_after_days": policy.files_after_days, "files_action": policy.files_action,
            "deliveries_after_days": policy.deliveries_after_days}


def due_files(policy: RetentionPolicy, now: datetime) -> list[StoredFile]:
    """Return the partner's files whose retention is over and that nothing waits for."""
    if policy.files_after_days is None:
        return []
    cutoff = now - timedelta(days=policy.files_after_days)
    rows = (StoredFile.objects.filter(partner_id=policy.partner_id,
                                      state__in=FINAL_FILE_STATES, state_changed_at__lte=cutoff)
            .exclude(deliveries__status__in=[Delivery.Status.PENDING, Delivery.Status.RUNNING,
                                             Delivery.Status.WAITING])
            .select_related("partner").order_by("state_changed_at", "pk"))
    routes = list(Route.objects.filter(enabled=True))
    return [row for row in rows if not _awaits_delivery(row, routes)]


def _awaits_delivery(stored: StoredFile, routes: list[Route]) -> bool:
    """Return True when a ready file is not yet delivered on a route that takes it."""
    if stored.state != FileState.READY:
        return False
    finished = set(Delivery.objects.filter(stored_file=stored, status__in=FINAL_DELIVERY_STATES)
                   .values_list("route_id", flat=True))
    return any(route.pk not in finished and routing.matches(route, stored)
               and (stored.ready_at is None or route.active_since <= stored.ready_at)
               for route in routes)


def due_deliveries(policy: RetentionPolicy, now: datetime) -> QuerySet[Delivery]:
    """Return the partner's finished delivery records older than its retention."""
    if policy.deliveries_after_days is None:
        return Delivery.objects.none()
    cutoff = now - timedelta(days=policy.deliveries_after_days)
    old = Delivery.objects.filter(
        Q(finished_at__lte=cutoff) | Q(finished_at__isnull=True, created_at__lte=cutoff),
        endpoint__partner_id=policy.partner_id, status__in=FINAL_DELIVERY_STATES)
    # A re-send protects its original: keep the original until the re-send goes too.
    return old.exclude(resends__in=Delivery.objects.exclude(pk__in=old.values("pk")))


def apply(*, now: datetime | None = None, dry_run: bool = False,
          partner: Partner | None = None) -> list[PartnerReport]:
    """Apply every partner's policy (or one partner's); return what went, or would go."""
    now = now or timezone.now()
    policies = RetentionPolicy.objects.select_related("partner").order_by("partner__name")
    if partner is not None:
        policies = policies.filter(partner=partner)
    return [apply_policy(policy, now=now, dry_run=dry_run) for policy in policies]


def apply_policy(policy: RetentionPolicy, *, now: datetime, dry_run: bool) -> PartnerReport:
    """Apply one partner's policy; audit one summary event when anything went."""
    report = PartnerReport(policy.partner.name, policy.files_action)
    for stored in due_files(policy, now):
        if dry_run or retire(stored, policy, now):
            report.files.append(stored)
            report.file_bytes += stored.size
    deliveries = due_deliveries(policy, now)
    report.deliveries = deliveries.count()
    report.attempts = DeliveryAttempt.objects.filter(delivery__in=deliveries).count()
    if not dry_run and report.deliveries:
        deliveries.delete()
    if not dry_run and (report.files or report.deliveries):
        events.retention_applied(partner=policy.partner, details=report.as_details())
    return report


def retire(stored: StoredFile, policy: RetentionPolicy, now: datetime) -> bool:
    """Delete or archive one file's bytes and mark its row; False if it changed meanwhile."""
    days = policy.files_after_days
    with transaction.atomic():
        # Conditional on the state we selected: a file a user just deleted is left alone.
        reason = f"retention: {policy.files_action}d after {days} days"
        changed = StoredFile.objects.filter(pk=stored.pk, state=stored.state).update(
            state=FileState.DELETED, state_changed_at=now, state_reason=reason)
        if not changed:
            return False
        details: dict[str, Any] = {"after_days": days, "previous_state": stored.state}
        if policy.files_action == RetentionPolicy.Action.ARCHIVE and _exists(stored):
            details["archived_to"] = str(archive.move(stored, now))
            StoredFile.objects.filter(pk=stored.pk).update(
                state_reason=f"{reason} to {details['archived_to']}"[:500])
        else:
            Path(stored.storage_path).unlink(missing_ok=True)
        events.file_event(origin=events.SYSTEM, action=f"retention.{policy.files_action}",
                          stored_file=stored, path=stored.path, details=details)
    return True


def _exists(stored: StoredFile) -> bool:
    return bool(stored.storage_path) and Path(stored.storage_path).is_file()
