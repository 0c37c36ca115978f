"""Read-only Django admin view of retention policies; changes go through
retention.services.set_policy (audited)."""

from __future__ import annotations

from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from retention.models import RetentionPolicy


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(ReadOnlyAdmin):
    list_display = ["partner", "files_after_days", "files_action", "deliveries_after_days",
                    "updated_at"]
