"""Query filters for the stored-files API list (django-filter)."""

from __future__ import annotations

from django_filters import rest_framework as filters

from accounts.models import Partner
from mft.filters import StableOrderingFilter, UtcIsoDateTimeFilter
from transfers.models import FileState, StoredFile


class StoredFileFilter(filters.FilterSet):
    partner = filters.ModelChoiceFilter(queryset=Partner.objects.all())
    owner = filters.CharFilter(field_name="owner_username", help_text="the uploader's username")
    state = filters.MultipleChoiceFilter(choices=FileState.choices,
                                         help_text="repeat for several states")
    path = filters.CharFilter(lookup_expr="startswith", help_text="path prefix")
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    ordering = StableOrderingFilter(fields=("created_at", "size", "path", "state", "id"))

    class Meta:
        model = StoredFile
        fields = ["partner", "owner", "state", "path", "created_after", "created_before"]
