"""Interim Django admin views for notifications: read-only (changes go through services)."""

from __future__ import annotations

from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from notifications.models import Notification, OutboundEvent, Subscription


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = ["name", "scope", "partner", "channel", "events", "digest", "enabled"]
    list_filter = ["scope", "channel", "digest", "enabled"]
    search_fields = ["name", "email_to", "url"]
    exclude = ["secret_sealed"]


@admin.register(OutboundEvent)
class OutboundEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "event", "partner_name", "subject", "created_at"]
    list_filter = ["event"]
    search_fields = ["subject", "partner_name"]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["id", "subscription", "channel", "event", "status", "attempts",
                    "next_attempt_at", "sent_at", "last_error"]
    list_filter = ["status", "channel"]
    list_select_related = ["subscription", "event"]
