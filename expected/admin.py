"""Read-only Django admin views of expected files and their deadlines (open alerts are the
`missing` ones); changes go through expected.services (the API)."""

from __future__ import annotations

from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from expected.models import Deadline, ExpectedFile


@admin.register(ExpectedFile)
class ExpectedFileAdmin(ReadOnlyAdmin):
    list_display = ["name", "partner", "folder", "filename_pattern", "deadline", "time_zone",
                    "weekdays", "enabled"]
    list_filter = ["enabled"]
    search_fields = ["name", "partner__name"]


@admin.register(Deadline)
class DeadlineAdmin(ReadOnlyAdmin):
    list_display = ["expected", "due_at", "status", "file_path", "arrived_at", "closed_at"]
    list_filter = ["status"]
