"""API representations of expected files and their deadlines."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import Partner, User
from expected.models import Deadline, ExpectedFile


class ExpectedFileSerializer(serializers.ModelSerializer[ExpectedFile]):
    partner = serializers.PrimaryKeyRelatedField(queryset=Partner.objects.all())
    user = serializers.PrimaryKeyRelatedField(queryset=User.objects.all(), required=False,
                                              allow_null=True)
    weekdays = serializers.ListField(child=serializers.JSONField(), required=False,
                                     help_text="0 (Monday) … 6 (Sunday), or mon … sun")
    open_alerts = serializers.SerializerMethodField()

    class Meta:
        model = ExpectedFile
        fields = ["id", "name", "partner", "user", "folder", "filename_pattern", "deadline",
                  "time_zone", "weekdays", "enabled", "open_alerts", "created_at"]
        read_only_fields = ["id", "open_alerts", "created_at"]

    def get_open_alerts(self, expected: ExpectedFile) -> int:
        return expected.deadlines.filter(status=Deadline.Status.MISSING).count()


class DeadlineSerializer(serializers.ModelSerializer[Deadline]):
    class Meta:
        model = Deadline
        fields = ["id", "expected", "due_at", "status", "stored_file", "file_path",
                  "arrived_at", "checked_at", "closed_at"]
        read_only_fields = fields


def write_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Return validated fields as the service takes them."""
    return {key: value for key, value in data.items() if key in ExpectedFileSerializer.Meta.fields}
