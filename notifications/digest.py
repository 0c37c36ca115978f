"""Daily digests: events collected for a digest subscription go out as one email.

Beat runs `send_digests()` once a day (`MFT_NOTIFY_DIGEST_HOUR`, UTC). Each subscription
with collected events gets one digest notification, which the outbox sends and retries
like any other; its entries point at it.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from notifications import queue
from notifications.models import Notification, Subscription


def send_digests() -> int:
    """Turn every subscription's collected events into one digest; return how many."""
    waiting = (Notification.objects.filter(status=Notification.Status.COLLECTED,
                                           subscription__enabled=True)
               .values_list("subscription_id", flat=True).distinct())
    return sum(1 for subscription_id in sorted(set(waiting)) if collect(subscription_id))


def collect(subscription_id: int) -> Notification | None:
    """Gather a subscription's collected events into a new digest, queued after commit."""
    with transaction.atomic():
        # The subscription's row lock keeps two digest runs from taking the same events.
        subscription = (Subscription.objects.select_for_update()
                        .filter(pk=subscription_id).first())
        if subscription is None:
            return None
        entries = Notification.objects.filter(subscription=subscription,
                                              status=Notification.Status.COLLECTED)
        ids = list(entries.values_list("pk", flat=True))
        if not ids:
            return None
        digest = Notification.objects.create(
            subscription=subscription, channel=Subscription.Channel.EMAIL, event=None,
            enqueued_at=timezone.now())
        Notification.objects.filter(pk__in=ids).update(status=Notification.Status.DIGESTED,
                                                       digest=digest)
        queue.enqueue_on_commit([digest.pk])
    return digest
