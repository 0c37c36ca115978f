"""API representations of retention policies and their dry-run reports."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import Partner
from retention.models import RetentionPolicy


class RetentionPolicySerializer(serializers.ModelSerializer[RetentionPolicy]):
    partner = serializers.PrimaryKeyRelatedField(queryset=Partner.objects.all())
    files_after_days = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    deliveries_after_days = serializers.IntegerField(min_value=1, required=False,
                                                     allow_null=True)

    class Meta:
        model = RetentionPolicy
        fields = ["id", "partner", "files_after_days", "files_action",
                  "deliveries_after_days", "updated_at"]
        read_only_fields = ["id", "updated_at"]


class RetentionReportSerializer(serializers.Serializer[Any]):
    """What a policy would retire now (a dry run)."""

    partner = serializers.CharField()
    action = serializers.CharField()
    files = serializers.ListField(child=serializers.DictField())
    file_bytes = serializers.IntegerField()
    deliveries = serializers.IntegerField()
    attempts = serializers.IntegerField()
