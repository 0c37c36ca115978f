"""Query filters for the expected-files API list (django-filter)."""

from __future__ import annotations

from django_filters import rest_framework as filters

from accounts.models import Partner
from expected.models import ExpectedFile
from mft.filters import StableOrderingFilter


class ExpectedFileFilter(filters.FilterSet):
    partner = filters.ModelChoiceFilter(queryset=Partner.objects.all())
    enabled = filters.BooleanFilter()
    name = filters.CharFilter(lookup_expr="icontains", max_length=120)
    ordering = StableOrderingFilter(fields=("name", "deadline", "created_at", "id"))

    class Meta:
        model = ExpectedFile
        fields = ["partner", "enabled", "name"]
