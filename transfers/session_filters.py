"""Query filters for the live sessions API list (django-filter)."""

from __future__ import annotations

from django.db.models import QuerySet
from django_filters import rest_framework as filters

from accounts.models import Partner
from mft.filters import StableOrderingFilter
from transfers.models import GatewaySession


class GatewaySessionFilter(filters.FilterSet):
    partner = filters.ModelChoiceFilter(queryset=Partner.objects.all())
    user = filters.CharFilter(field_name="username", help_text="the session's username")
    transferring = filters.BooleanFilter(method="filter_transferring",
                                         help_text="only sessions with (or without) a "
                                                   "transfer running")
    ordering = StableOrderingFilter(fields=("started_at", "last_command_at", "username",
                                            "transfer_bytes", "id"))

    class Meta:
        model = GatewaySession
        fields = ["partner", "user", "transferring"]

    def filter_transferring(self, queryset: QuerySet[GatewaySession], name: str,
                            value: bool | None) -> QuerySet[GatewaySession]:
        """Keep sessions with (true) or without (false) a transfer running."""
        if value is None:
            return queryset
        if value:
            return queryset.exclude(transfer_direction="")
        return queryset.filter(transfer_direction="")
