"""Run deliveries as database rows with leases: claim, attempt, record, retry, sweep.

Like the file pipeline: a worker claims a due delivery with a lease (one conditional
UPDATE, under a lock on its endpoint so the endpoint's connection limit holds), renews the
lease while bytes flow, and records the attempt, the delivery's new status, the audit
event and the notification in one transaction. A delivery found done or leased is left
alone (read without a lock); a message dropped because the endpoint was full is marked and
sent again by the next delivery to finish there, or by the sweeper. The sweeper
re-sends expired leases, due retries and lost messages, so a killed worker's delivery is
redone by another, never doubled: the redo resumes the remote temporary file, or finds the
file already renamed into place and verifies it.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Partner
from audit import events
from deliveries import errors, ftps_client, pull, push, queue, routing, windows
from deliveries.attempts import CANCELLED, FAILED, RETRY, SUCCESS, Attempt, Outcome
from deliveries.models import Delivery, DeliveryAttempt, PartnerEndpoint
from deliveries.secrets import SecretUnavailable
from mft.errors import PortsideError, QuotaExceeded, TemporarilyUnavailable
from notifications import events as notices
from transfers.pipeline import worker_name

log = logging.getLogger(__name__)

_ACTIVE = [Delivery.Status.PENDING, Delivery.Status.WAITING]


def _due(now: datetime) -> Q:
    waiting = Q(status__in=_ACTIVE) & (Q(not_before__isnull=True) | Q(not_before__lte=now))
    return waiting | Q(status=Delivery.Status.RUNNING, lease_until__lt=now)


def _paused(delivery: Delivery) -> bool:
    """Return True when the endpoint, route, pull or partner is switched off."""
    endpoint = delivery.endpoint
    owner = delivery.route or delivery.pull
    return (not endpoint.enabled or endpoint.partner.status != Partner.Status.ACTIVE
            or (owner is not None and not owner.enabled))


def _window_opening(delivery: Delivery, now: datetime) -> datetime | None:
    route = delivery.route
    if route is None:
        return None
    return windows.next_opening(route.window_start, route.window_end, route.time_zone, now)


def claim(delivery_id: int) -> tuple[Delivery, DeliveryAttempt] | None:
    """Take the delivery's lease if it is due, in its window and its endpoint has room;
    return it with its new attempt row."""
    now = timezone.now()
    # Read first, without a lock: a duplicate message (the delivery already running or
    # done) costs no write transaction, which on SQLite would wait for the database lock.
    delivery = (Delivery.objects.filter(_due(now), pk=delivery_id)
                .select_related("endpoint__partner", "route", "pull").first())
    if delivery is None or _paused(delivery):
        return None
    opening = _window_opening(delivery, now)
    if opening is not None:
        Delivery.objects.filter(pk=delivery.pk).update(not_before=opening)
        return None
    with transaction.atomic():
        row = _take_lease(delivery, now)
    return None if row is None else (delivery, row)


def _take_lease(delivery: Delivery, now: datetime) -> DeliveryAttempt | None:
    """Claim the delivery under its endpoint's lock and open its attempt row, or note that
    its message was dropped for lack of room (a finishing delivery sends it again)."""
    # The endpoint row's lock makes count-then-claim atomic across workers.
    list(PartnerEndpoint.objects.select_for_update(no_key=True)
         .filter(pk=delivery.endpoint_id))
    busy = Delivery.objects.filter(endpoint_id=delivery.endpoint_id,
                                   status=Delivery.Status.RUNNING, lease_until__gte=now)
    if busy.exclude(pk=delivery.pk).count() >= delivery.endpoint.max_connections:
        Delivery.objects.filter(_due(now), pk=delivery.pk).update(enqueued_at=None)
        return None
    owner = worker_name()
    claimed = Delivery.objects.filter(_due(now), pk=delivery.pk).update(
        status=Delivery.Status.RUNNING, lease_owner=owner,
        lease_until=now + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS),
        attempts=F("attempts") + 1, started_at=Coalesce("started_at", Value(now)))
    if claimed != 1:
        return None
    DeliveryAttempt.objects.filter(delivery_id=delivery.pk, finished_at__isnull=True).update(
        finished_at=now, outcome=DeliveryAttempt.Outcome.ABANDONED,
        error="the worker stopped before finishing; its lease expired")
    delivery.refresh_from_db()
    return DeliveryAttempt.objects.create(delivery=delivery, number=delivery.attempts,
                                          worker=owner, stage="connecting")


def run(delivery_id: int) -> None:
    """Make one attempt at a delivery, if it is due and free; record how it went."""
    claimed = claim(delivery_id)
    if claimed is None:
        return
    delivery, row = claimed
    attempt = Attempt(delivery, row)
    outcome = _perform(delivery, attempt)
    if outcome is not None:
        _record(delivery, attempt, outcome)
        _kick(delivery.endpoint_id, delivery.endpoint.max_connections)


def _perform(delivery: Delivery, attempt: Attempt) -> Outcome | None:
    """Run the push or the pull; turn what went wrong into an outcome."""
    try:
        if delivery.direction == Delivery.Direction.PUSH:
            return push.run(delivery, attempt)
        return pull.fetch(delivery, attempt)
    except errors.LeaseLost:
        log.warning("delivery %s: lease lost to another worker; stopping", delivery.pk)
        return None
    except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded outcome
        return classify(exc, attempt)


def classify(exc: BaseException, attempt: Attempt) -> Outcome:
    """Return the outcome an error means: retry what may pass, fail what will not."""
    reply = getattr(exc, "reply", "") or attempt.reply
    if isinstance(exc, errors.Cancelled):
        return Outcome(CANCELLED, str(exc), reply)
    if isinstance(exc, ftps_client.TlsVerificationFailed):
        return Outcome(FAILED, f"TLS verification failed: {exc}", reply)
    if isinstance(exc, ftps_client.RemoteRefused):
        return Outcome(FAILED if exc.permanent else RETRY, f"remote refused: {exc}", reply)
    if isinstance(exc, ftps_client.RemoteUnavailable | errors.VerificationFailed):
        return Outcome(RETRY, str(exc), reply)
    if isinstance(exc, errors.PermanentProblem | SecretUnavailable):
        return Outcome(FAILED, str(exc), reply)
    if isinstance(exc, PortsideError):
        transient = isinstance(exc, QuotaExceeded | TemporarilyUnavailable)
        return Outcome(RETRY if transient else FAILED, f"refused here: {exc}", reply)
    log.exception("delivery %s: unexpected error", attempt.delivery.pk)
    return Outcome(RETRY, f"{type(exc).__name__}: {exc}"[:1000], reply)


def backoff(attempts: int) -> float:
    """Return the seconds to wait before the next try: doubling, capped, with jitter."""
    delay = min(settings.DELIVERY_RETRY_MAX,
                settings.DELIVERY_RETRY_BASE * 2 ** min(attempts - 1, 30))
    return delay * random.uniform(0.5, 1.0)


def _give_up_reason(delivery: Delivery, now: datetime) -> str | None:
    """Return why retrying is over (attempts or age), or None."""
    if delivery.attempts >= settings.DELIVERY_MAX_ATTEMPTS:
        return f"gave up after {delivery.attempts} attempts"
    if (now - delivery.created_at).total_seconds() >= settings.DELIVERY_MAX_AGE:
        return f"gave up: older than {settings.DELIVERY_MAX_AGE} seconds"
    return None


def _record(delivery: Delivery, attempt: Attempt, outcome: Outcome) -> None:
    """Store the attempt, the delivery's new status, the audit event and the notification
    in one transaction."""
    now = timezone.now()
    with transaction.atomic():
        current = Delivery.objects.select_for_update(of=("self",)).select_related(
            "endpoint__partner").filter(
            pk=delivery.pk, lease_owner=attempt.owner, status=Delivery.Status.RUNNING).first()
        if current is None:
            log.warning("delivery %s: lease lost before recording; dropping the result",
                        delivery.pk)
            return
        kind, reason = outcome.kind, outcome.error
        if kind == RETRY and (gave_up := _give_up_reason(current, now)) is not None:
            kind, reason = FAILED, f"{gave_up}; last error: {outcome.error}"
        _finish_attempt(attempt, outcome, kind, now)
        _apply(current, kind, reason, outcome, now)
        _audit(current, kind, reason, attempt)
        if kind in (SUCCESS, FAILED):
            _announce(current, kind, reason)


def _finish_attempt(attempt: Attempt, outcome: Outcome, kind: str, now: datetime) -> None:
    row = attempt.row  # its stage is current: every stage goes through the Attempt
    row.finished_at = now
    row.seconds = round((now - row.started_at).total_seconds(), 3)
    row.outcome = {SUCCESS: DeliveryAttempt.Outcome.SUCCESS,
                   RETRY: DeliveryAttempt.Outcome.RETRY,
                   FAILED: DeliveryAttempt.Outcome.FAILED,
                   CANCELLED: DeliveryAttempt.Outcome.CANCELLED}[kind]
    row.error = outcome.error[:1000]
    row.remote_reply = (outcome.reply or attempt.reply)[:500]
    row.bytes_transferred = attempt.bytes
    row.resumed_from = attempt.resumed_from
    row.details = {**attempt.details, **outcome.details}
    row.save()


def _apply(current: Delivery, kind: str, reason: str, outcome: Outcome, now: datetime) -> None:
    current.lease_owner, current.lease_until = "", None
    if kind == SUCCESS:
        current.status, current.finished_at, current.last_error = (
            Delivery.Status.DELIVERED, now, "")
        for name, value in outcome.fields.items():
            setattr(current, name, value)
    elif kind == RETRY:
        deadline = current.created_at + timedelta(seconds=settings.DELIVERY_MAX_AGE)
        current.status = Delivery.Status.WAITING
        current.not_before = min(now + timedelta(seconds=backoff(current.attempts)), deadline)
        current.last_error = reason[:1000]
    else:
        current.status = (Delivery.Status.FAILED if kind == FAILED
                          else Delivery.Status.CANCELLED)
        current.finished_at, current.last_error = now, reason[:1000]
    current.save()


def _audit(current: Delivery, kind: str, reason: str, attempt: Attempt) -> None:
    details = {"attempt": current.attempts, "endpoint": str(current.endpoint),
               "remote_path": current.remote_path, "stage": attempt.row.stage}
    if kind == SUCCESS:
        events.delivery_succeeded(delivery=current, details={
            **details, "size": current.sent_size, "sha256": current.sent_sha256,
            "source_sha256": current.source_sha256, "verified_by": current.verified_by})
    elif kind == RETRY:
        events.delivery_attempted(delivery=current, outcome=events.FAILURE, details={
            **details, "error": reason, "next_try": current.not_before.isoformat()
            if current.not_before else None})
    elif kind == FAILED:
        events.delivery_failed(delivery=current, reason=reason, details=details)
    else:
        events.delivery_cancelled(delivery=current, reason=reason)


def _announce(delivery: Delivery, kind: str, reason: str) -> None:
    """Tell subscribers (email, webhooks, feed) how a delivery ended, with its record.

    In a savepoint of the recording transaction: the feed event commits with the outcome
    (its messages go after the commit), and a failure drops only the notification.
    """
    try:
        with transaction.atomic():
            if kind == SUCCESS:
                notices.delivery_succeeded(delivery)
            else:
                notices.delivery_failed(delivery, reason=reason)
    except Exception:  # the receipt and audit event stand without the notification
        log.exception("delivery %s: notifying subscribers failed", delivery.pk)


def _resendable(endpoint_id: int, now: datetime) -> QuerySet[Delivery]:
    """Return the endpoint's due deliveries that have no message on its way: dropped for
    lack of room, or a retry or window opening that came due after the last one."""
    due = Q(not_before__isnull=True) | Q(not_before__lte=now)
    unsent = Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=F("not_before"))
    return Delivery.objects.filter(due & unsent, endpoint_id=endpoint_id, status__in=_ACTIVE)


def _kick(endpoint_id: int, slots: int) -> None:
    """Send the endpoint's waiting deliveries that have no message, now that a slot is free.

    As many as the endpoint has free connections, oldest first, each marked sent under the
    endpoint's lock: two deliveries finishing at once do not send the same one, and the
    endpoint's concurrency does not shrink to a single chain of deliveries. Deliveries whose
    message is still queued are left alone (sending them again only flooded the queue with
    messages whose claim finds them running or done).
    """
    now = timezone.now()
    # SQLite: a claim that found no room ran before this delivery's record (the write lock
    # orders them), so this read sees its mark; skip the write lock when there is nothing.
    if connection.vendor == "sqlite" and not _resendable(endpoint_id, now).exists():
        return
    with transaction.atomic():
        list(PartnerEndpoint.objects.select_for_update(no_key=True).filter(pk=endpoint_id))
        busy = Delivery.objects.filter(endpoint_id=endpoint_id, status=Delivery.Status.RUNNING,
                                       lease_until__gte=now).count()
        ids = list(_resendable(endpoint_id, now).order_by("created_at")
                   .values_list("pk", flat=True)[:max(slots - busy, 0)])
        if ids:
            Delivery.objects.filter(pk__in=ids).update(enqueued_at=now)
            for delivery_id in ids:
                queue.enqueue_on_commit(delivery_id)


def sweep() -> int:
    """Re-send deliveries whose lease expired, whose retry is due or whose message was lost,
    and route files whose routing message was lost; return how many."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.DELIVERY_PENDING_GRACE)
    not_sent_since = (Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale)
                      | Q(enqueued_at__lt=F("not_before")))
    paused = (Q(endpoint__enabled=False) | Q(route__enabled=False) | Q(pull__enabled=False)
              | ~Q(endpoint__partner__status=Partner.Status.ACTIVE))
    due = Delivery.objects.exclude(paused).filter(
        Q(status=Delivery.Status.RUNNING, lease_until__lt=now)
        | (Q(status__in=_ACTIVE) & (Q(not_before__isnull=True) | Q(not_before__lte=now))
           & not_sent_since))
    ids = list(due.order_by("pk").values_list("pk", flat=True)[:1000])
    Delivery.objects.filter(pk__in=ids).update(enqueued_at=now)
    for delivery_id in ids:
        queue.enqueue(delivery_id)
    return len(ids) + routing.catch_up()
