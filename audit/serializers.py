"""API representation of audit events."""

from __future__ import annotations

from rest_framework import serializers

from audit.exporters import COLUMNS
from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = list(COLUMNS)
        read_only_fields = fields
