"""A delivery attempt in progress, and how it ended."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from deliveries import errors
from deliveries.models import Delivery, DeliveryAttempt

SUCCESS, RETRY, FAILED, CANCELLED = "success", "retry", "failed", "cancelled"


@dataclass
class Outcome:
    """How an attempt ended, and what to write on the delivery when it succeeded."""

    kind: str
    error: str = ""
    reply: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Attempt:
    """The running attempt: records its stage and progress, and keeps the lease alive."""

    def __init__(self, delivery: Delivery, row: DeliveryAttempt) -> None:
        self.delivery, self.row = delivery, row
        self.owner = delivery.lease_owner
        self.details: dict[str, Any] = {}
        self.bytes = 0
        self.resumed_from = 0
        self.reply = ""
        self._renewed = time.monotonic()

    def stage(self, name: str, **delivery_fields: object) -> None:
        """Record how far the attempt got (a redo after a crash looks at it), and renew the
        lease with `delivery_fields` written on the delivery in the same statement."""
        DeliveryAttempt.objects.filter(pk=self.row.pk).update(stage=name)
        self.row.stage = name
        self.renew(**delivery_fields)

    def progress(self, transferred: int) -> None:
        """Note bytes moved; renew the lease now and then (called for every block)."""
        self.bytes = transferred
        if time.monotonic() - self._renewed > settings.DELIVERY_LEASE_SECONDS / 4:
            self.renew()

    def renew(self, **delivery_fields: object) -> None:
        """Extend the lease (writing `delivery_fields` with it), or stop when another worker
        has taken the delivery over."""
        until = timezone.now() + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
        kept = Delivery.objects.filter(pk=self.delivery.pk, lease_owner=self.owner,
                                       status=Delivery.Status.RUNNING).update(
            lease_until=until, **delivery_fields)
        if not kept:
            raise errors.LeaseLost(f"delivery {self.delivery.pk} was taken over")
        self._renewed = time.monotonic()
