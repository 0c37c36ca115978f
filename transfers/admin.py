"""Interim Django admin views for stored files and pipeline steps (read-only)."""

from __future__ import annotations

from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from transfers.models import PipelineStep, StoredFile


class StepInline(admin.TabularInline):  # type: ignore[type-arg]
    model = PipelineStep
    extra = 0
    can_delete = False
    readonly_fields = ("name", "status", "attempts", "started_at", "finished_at", "outcome",
                       "details")
    fields = readonly_fields

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(StoredFile)
class StoredFileAdmin(ReadOnlyAdmin):
    list_display = ["path", "owner_username", "partner", "size", "state", "state_reason",
                    "created_at", "ready_at"]
    list_filter = ["state"]
    search_fields = ["path", "owner_username", "sha256"]
    inlines = [StepInline]
