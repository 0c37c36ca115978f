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

from celery.worker import state as worker_state
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
from deliveries.session import Session
from mft.errors import PortsideError, QuotaExceeded, TemporarilyUnavailable
from notifications import events as notices
from notifications import services as notification_services
from notifications.models import Subscription
from transfers.pipeline import worker_name

log = logging.getLogger(__name__)

_ACTIVE = [Delivery.Status.PENDING, Delivery.Status.WAITING]
# Waiting deliveries a session tries to claim next (another worker may take the first).
_CANDIDATES = 4


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
    # The endpoint row's lock makes count-then-claim atomic across workers. On SQLite the
    # IMMEDIATE transaction already holds the database's write lock (one writer at a time).
    if connection.vendor != "sqlite":
        list(PartnerEndpoint.objects.select_for_update(no_key=True)
             .filter(pk=delivery.endpoint_id))
    busy = Delivery.objects.filter(endpoint_id=delivery.endpoint_id,
                                   status=Delivery.Status.RUNNING, lease_until__gte=now)
    if busy.exclude(pk=delivery.pk).count() >= delivery.endpoint.max_connections:
        Delivery.objects.filter(_due(now), pk=delivery.pk).update(enqueued_at=None)
        return None
    owner = worker_name()
    lease_until = now + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    claimed = Delivery.objects.filter(_due(now), pk=delivery.pk).update(
        status=Delivery.Status.RUNNING, lease_owner=owner, lease_until=lease_until,
        attempts=F("attempts") + 1, started_at=Coalesce("started_at", Value(now)))
    if claimed != 1:
        return None
    # What the UPDATE wrote, with the attempts it counted (another worker may have counted
    # some since the read): the attempt's number, and the record's give-up check.
    attempts, started_at = Delivery.objects.filter(pk=delivery.pk).values_list(
        "attempts", "started_at").get()
    delivery.status, delivery.lease_owner, delivery.lease_until = (
        Delivery.Status.RUNNING, owner, lease_until)
    delivery.attempts, delivery.started_at = attempts, started_at
    if attempts > 1:  # an earlier attempt's row may still be open: its worker died
        DeliveryAttempt.objects.filter(delivery_id=delivery.pk, finished_at__isnull=True).update(
            finished_at=now, outcome=DeliveryAttempt.Outcome.ABANDONED,
            error="the worker stopped before finishing; its lease expired")
    return DeliveryAttempt.objects.create(delivery=delivery, number=attempts,
                                          worker=owner, stage="connecting")


def run(delivery_id: int) -> None:
    """Make one attempt at a delivery, if it is due and free; record how it went. Then,
    while they succeed, send the endpoint's deliveries waiting for a free connection over
    the same session (see deliveries.session)."""
    claimed = claim(delivery_id)
    session = Session()
    try:
        while claimed is not None:
            delivery, row = claimed
            attempt = Attempt(delivery, row)
            outcome = _perform(delivery, attempt, session)
            if outcome is not None:
                _record(delivery, attempt, outcome)
            claimed = _next_over(session, delivery, outcome)
            if outcome is not None:
                _kick(delivery.endpoint_id, delivery.endpoint.max_connections)
    finally:
        session.close()


def _next_over(session: Session, delivery: Delivery,
               outcome: Outcome | None) -> tuple[Delivery, DeliveryAttempt] | None:
    """Claim, for the session still open after a success, the endpoint's oldest due delivery
    that waits for a free connection (its claim found the endpoint full, so no message is
    on its way: nobody else is about to take it); None to stop."""
    if (outcome is None or outcome.kind != SUCCESS or not session.is_open
            or session.files >= settings.DELIVERY_SESSION_FILES or _worker_stopping()):
        return None
    waiting = (_resendable(delivery.endpoint_id, timezone.now()).order_by("created_at", "pk")
               .values_list("pk", flat=True)[:_CANDIDATES])
    for delivery_id in waiting:  # a finishing delivery's _kick may have sent the oldest
        if (claimed := claim(delivery_id)) is not None:
            return claimed
    return None


def _worker_stopping() -> bool:
    """Return whether the Celery worker was told to stop (warm shutdown): finish, take no
    more."""
    return worker_state.should_stop is not None and worker_state.should_stop is not False


def _perform(delivery: Delivery, attempt: Attempt, session: Session) -> Outcome | None:
    """Run the push or the pull; turn what went wrong into an outcome."""
    try:
        if delivery.direction == Delivery.Direction.PUSH:
            return push.run(delivery, attempt, session)
        return pull.fetch(delivery, attempt, session)
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
    in one transaction.

    The outcome's subscribers are read before it (on SQLite, every write transaction holds
    the one database write lock: reads done outside it keep it shorter); the notification
    checks them again inside, so one deleted or disabled meanwhile is left out.
    """
    now = timezone.now()
    heard_by = _subscribers(delivery, outcome.kind)
    kind, reason = outcome.kind, outcome.error
    if kind == RETRY and (gave_up := _give_up_reason(delivery, now)) is not None:
        kind, reason = FAILED, f"{gave_up}; last error: {outcome.error}"
    fields = _new_fields(delivery, kind, reason, outcome, now)
    with transaction.atomic():
        # Written only while the lease is ours (the row stays locked until the commit).
        kept = Delivery.objects.filter(pk=delivery.pk, lease_owner=attempt.owner,
                                       status=Delivery.Status.RUNNING).update(**fields)
        if not kept:
            log.warning("delivery %s: lease lost before recording; dropping the result",
                        delivery.pk)
            return
        for name, value in fields.items():
            setattr(delivery, name, value)
        _finish_attempt(attempt, outcome, kind, now)
        _audit(delivery, kind, reason, attempt)
        if kind in (SUCCESS, FAILED):
            _announce(delivery, kind, reason, heard_by if kind == outcome.kind else None)


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
    row.save(update_fields=["stage", "finished_at", "seconds", "outcome", "error",
                            "remote_reply", "bytes_transferred", "resumed_from", "details"])


def _new_fields(delivery: Delivery, kind: str, reason: str, outcome: Outcome,
                now: datetime) -> dict[str, object]:
    """Return what the attempt's end changes on the delivery's row."""
    fields: dict[str, object] = {"lease_owner": "", "lease_until": None}
    if kind == SUCCESS:
        fields.update(status=Delivery.Status.DELIVERED, finished_at=now, last_error="",
                      **outcome.fields)
    elif kind == RETRY:
        deadline = delivery.created_at + timedelta(seconds=settings.DELIVERY_MAX_AGE)
        fields.update(status=Delivery.Status.WAITING, last_error=reason[:1000],
                      not_before=min(now + timedelta(seconds=backoff(delivery.attempts)),
                                     deadline))
    else:
        fields.update(status=(Delivery.Status.FAILED if kind == FAILED
                              else Delivery.Status.CANCELLED),
                      finished_at=now, last_error=reason[:1000])
    return fields


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


def _subscribers(delivery: Delivery, kind: str) -> list[Subscription] | None:
    """Return who hears of a delivery ending this way, or None where it does not end (a retry
    that runs out of attempts is rare: its subscribers are read in the record)."""
    event = {SUCCESS: notices.DELIVERY_SUCCEEDED, FAILED: notices.DELIVERY_FAILED}.get(kind)
    if event is None:
        return None
    return notification_services.listeners(event, delivery.endpoint.partner_id)


def _announce(delivery: Delivery, kind: str, reason: str,
              heard_by: list[Subscription] | None = None) -> None:
    """Tell subscribers (email, webhooks, feed) how a delivery ended, with its record
    (`heard_by`: its subscribers as read before the transaction, see _record).

    In a savepoint of the recording transaction: the feed event commits with the outcome
    (its messages go after the commit), and a failure drops only the notification.
    """
    try:
        with transaction.atomic():
            if kind == SUCCESS:
                notices.delivery_succeeded(delivery, listeners=heard_by)
            else:
                notices.delivery_failed(delivery, reason=reason, listeners=heard_by)
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
