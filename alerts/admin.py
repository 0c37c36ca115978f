"""Read-only Django admin views of what the alert checks already announced."""

from __future__ import annotations

from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from alerts.models import ExpiryNotice, PostureNotice


@admin.register(ExpiryNotice)
class ExpiryNoticeAdmin(ReadOnlyAdmin):
    list_display = ["kind", "label", "expires_at", "threshold_days", "announced_at"]
    list_filter = ["kind"]


@admin.register(PostureNotice)
class PostureNoticeAdmin(ReadOnlyAdmin):
    list_display = ["finding", "severity", "title", "announced_at"]
