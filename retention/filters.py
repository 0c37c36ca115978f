"""Query filters for the retention-policies API list (django-filter)."""

from __future__ import annotations

from django_filters import rest_framework as filters

from accounts.models import Partner
from mft.filters import StableOrderingFilter
from retention.models import RetentionPolicy


class RetentionPolicyFilter(filters.FilterSet):
    partner = filters.ModelChoiceFilter(queryset=Partner.objects.all())
    files_action = filters.ChoiceFilter(choices=RetentionPolicy.Action.choices)
    ordering = StableOrderingFilter(fields=("updated_at", "files_after_days", "id"))

    class Meta:
        model = RetentionPolicy
        fields = ["partner", "files_action"]
