"""Interim Django admin view of the audit log: read-only, never deletable."""

from __future__ import annotations

from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "source_ip", "protocol", "action", "object_repr",
                    "outcome"]
    list_filter = ["outcome", "protocol", "action"]
    search_fields = ["actor", "action", "object_repr", "object_id"]
    date_hierarchy = "created_at"
