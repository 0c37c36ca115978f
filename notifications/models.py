"""Subscriptions, the append-only event feed, and one row per notification sent.

The database is the record of work: each message to a subscriber is a row with attempts,
a lease and the time of its next try, so a retry survives a restart and a dead worker's
send is redone by the sweeper.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Subscription(models.Model):
    """Who hears about which events, how (email or webhook), and whether as a daily digest.

    An admin subscription hears about events of every partner and of the platform; a
    partner subscription only about that partner's events.
    """

    class Scope(models.TextChoices):
        ADMIN = "admin"
        PARTNER = "partner"

    class Channel(models.TextChoices):
        EMAIL = "email"
        WEBHOOK = "webhook"

    name = models.CharField(max_length=120)
    scope = models.CharField(max_length=8, choices=Scope.choices)
    partner = models.ForeignKey("accounts.Partner", null=True, blank=True,
                                on_delete=models.CASCADE, related_name="subscriptions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.CASCADE, related_name="subscriptions",
                             help_text="email: this user's address when no address is given")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    events = models.JSONField(default=list,
                              help_text='event names or patterns: ["file.ready", "delivery.*"]')
    email_to = models.CharField(
        max_length=1000, blank=True,
        help_text="comma-separated addresses; blank: the user's, else the partner contact's, "
                  "else every admin's")
    url = models.URLField(max_length=1000, blank=True)
    secret_sealed = models.TextField(blank=True, editable=False)
    # Authenticates the sealed secret to this row: a secret copied from another row fails.
    secret_context = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    digest = models.BooleanField(default=False, help_text="email: one message a day")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(scope="admin", partner__isnull=True)
                | Q(scope="partner", partner__isnull=False),
                name="subscription_scope_matches_partner"),
            models.CheckConstraint(condition=Q(channel="email") | (~Q(url="") & Q(digest=False)),
                                   name="subscription_webhook_has_url_no_digest"),
        ]

    def __str__(self) -> str:
        return self.name


class OutboundEventQuerySet(models.QuerySet["OutboundEvent"]):
    def update(self, **kwargs: Any) -> int:
        """Refuse: the event feed is append-only (consumers hold cursors into it)."""
        raise ValueError("outbound events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        """Refuse: the event feed is append-only."""
        raise ValueError("outbound events are append-only")


class OutboundEvent(models.Model):
    """Something subscribers and the event feed hear about; its id is the feed's cursor."""

    event = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Copied values, not a foreign key: the feed outlives the rows it mentions.
    partner_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    partner_name = models.CharField(max_length=120, blank=True)
    subject = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    objects = OutboundEventQuerySet.as_manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.event}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert once; refuse any later save of the same row."""
        if self.pk is not None:
            raise ValueError("outbound events are append-only")
        super().save(*args, **kwargs)


class Notification(models.Model):
    """One message to one subscription: an event, or a digest of collected events."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        WAITING = "waiting", "waiting to retry"
        SENT = "sent"
        FAILED = "failed", "failed (gave up)"
        COLLECTED = "collected", "collected for the daily digest"
        DIGESTED = "digested", "sent in a digest"

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE,
                                     related_name="notifications")
    channel = models.CharField(max_length=8, choices=Subscription.Channel.choices)
    event = models.ForeignKey(OutboundEvent, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="notifications", help_text="blank for a digest")
    digest = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="entries", help_text="the digest that carried it")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"]),
                   models.Index(fields=["subscription", "status"])]

    def __str__(self) -> str:
        what = self.event.event if self.event_id and self.event else "digest"
        return f"{what} → {self.subscription} ({self.status})"
