"""Send notifications as database rows with leases: claim, send, record, retry, sweep.

Like the pipeline and partner deliveries: a worker claims a due notification with a lease
(one conditional UPDATE), sends it outside any transaction, and records the outcome. A
failure waits `backoff()` (doubling, capped, with jitter) and is re-sent by the sweeper
(beat) when due; after `MFT_NOTIFY_MAX_ATTEMPTS` tries, or a failure no retry can fix,
it is given up on and audited. A worker killed mid-send leaves an expired lease, which the
sweeper re-sends: a notification may arrive twice, never zero times — receivers dedupe on
the event id.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit import events
from deliveries.secrets import SecretUnavailable
from mft import metrics
from notifications import emails, queue, webhooks
from notifications.models import Notification, Subscription
from notifications.outcome import SendResult

log = logging.getLogger(__name__)

_ACTIVE = [Notification.Status.PENDING, Notification.Status.WAITING]


def owner_name() -> str:
    """Return a lease owner's name: this process, and this claim (threads share a pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _due(now: datetime) -> Q:
    waiting = Q(status__in=_ACTIVE) & (Q(next_attempt_at__isnull=True)
                                       | Q(next_attempt_at__lte=now))
    return waiting | Q(status=Notification.Status.SENDING, lease_until__lt=now)


def claim(notification_id: int) -> Notification | None:
    """Take the notification's lease if it is due; return it, or None when not ours."""
    now = timezone.now()
    claimed = Notification.objects.filter(_due(now), pk=notification_id).update(
        status=Notification.Status.SENDING, lease_owner=owner_name(),
        lease_until=now + timedelta(seconds=settings.NOTIFY_LEASE_SECONDS),
        attempts=F("attempts") + 1)
    if claimed != 1:
        return None
    return (Notification.objects.select_related("subscription", "event")
            .filter(pk=notification_id).first())


def send(notification_id: int) -> None:
    """Make one try at a notification, if it is due and free; record how it went."""
    notification = claim(notification_id)
    if notification is None:
        return
    record(notification, attempt(notification))


def attempt(notification: Notification) -> SendResult:
    """Send by the notification's channel; turn what went wrong into a result."""
    if not notification.subscription.enabled:
        return SendResult(ok=False, permanent=True, error="subscription switched off")
    try:
        if notification.channel == Subscription.Channel.WEBHOOK:
            return webhooks.send(notification)
        return emails.send(notification)
    except SecretUnavailable as exc:
        return SendResult(ok=False, permanent=True, error=f"webhook secret unavailable: {exc}")
    except Exception as exc:
        log.exception("notification %s: unexpected error", notification.pk)
        return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])


def backoff(attempts: int) -> float:
    """Return the seconds to wait before the next try: doubling, capped, with jitter."""
    delay = min(settings.NOTIFY_RETRY_MAX,
                settings.NOTIFY_RETRY_BASE * 2 ** min(max(attempts, 1) - 1, 30))
    return delay * random.uniform(0.5, 1.0)


def record(notification: Notification, result: SendResult) -> str:
    """Store the try's outcome (sent, waiting, failed) unless the lease was lost; return it."""
    now = timezone.now()
    with transaction.atomic():
        current = Notification.objects.select_for_update().filter(
            pk=notification.pk, lease_owner=notification.lease_owner,
            status=Notification.Status.SENDING).first()
        if current is None:
            log.warning("notification %s: lease lost before recording", notification.pk)
            return "lost"
        outcome = _apply(current, result, now)
        current.save()
        if outcome == "failed":
            events.notification_failed(notification=current, reason=current.last_error,
                                       details={"attempts": current.attempts,
                                                "channel": current.channel,
                                                "subscription": current.subscription_id})
    metrics.NOTIFICATIONS.labels(notification.channel, outcome).inc()
    return outcome


def _apply(current: Notification, result: SendResult, now: datetime) -> str:
    current.lease_owner, current.lease_until = "", None
    current.response_status = result.status
    if result.ok:
        current.status, current.sent_at, current.last_error = (
            Notification.Status.SENT, now, "")
        return "sent"
    current.last_error = result.error[:1000]
    if result.permanent or current.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        current.status = Notification.Status.FAILED
        if not result.permanent:
            current.last_error = (f"gave up after {current.attempts} attempts; last error: "
                                  f"{result.error}")[:1000]
        return "failed"
    current.status = Notification.Status.WAITING
    current.next_attempt_at = now + timedelta(seconds=backoff(current.attempts))
    return "retry"


def sweep() -> int:
    """Re-send notifications whose lease expired, whose retry is due or whose message was
    lost; return how many."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.NOTIFY_PENDING_GRACE)
    not_sent_since = (Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale)
                      | Q(enqueued_at__lt=F("next_attempt_at")))
    due = Notification.objects.filter(
        Q(status=Notification.Status.SENDING, lease_until__lt=now)
        | (Q(status__in=_ACTIVE) & (Q(next_attempt_at__isnull=True)
                                    | Q(next_attempt_at__lte=now)) & not_sent_since))
    ids = list(due.order_by("pk").values_list("pk", flat=True)[:1000])
    Notification.objects.filter(pk__in=ids).update(enqueued_at=now)
    for notification_id in ids:
        queue.enqueue(notification_id)
    return len(ids)
