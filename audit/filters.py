"""Query filters for the audit-event API list and exports (django-filter)."""

from __future__ import annotations

from django_filters import rest_framework as filters

from audit.models import AuditEvent
from mft.filters import AddressFilter, StableOrderingFilter, UtcIsoDateTimeFilter


class AuditEventFilter(filters.FilterSet):
    actor = filters.CharFilter(help_text="who acted (username), exactly")
    action = filters.CharFilter(help_text="the action, exactly (login, upload, user.update…)")
    action_prefix = filters.CharFilter(field_name="action", lookup_expr="startswith",
                                       help_text="actions starting with this (user.)")
    outcome = filters.ChoiceFilter(choices=AuditEvent.Outcome.choices)
    source_ip = AddressFilter()
    object_type = filters.CharFilter()
    object_id = filters.CharFilter()
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    ordering = StableOrderingFilter(fields=("id", "created_at"))

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "action_prefix", "outcome", "source_ip", "object_type",
                  "object_id", "created_after", "created_before"]
