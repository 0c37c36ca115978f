"""Query filters for the deliveries API lists (django-filter)."""

from __future__ import annotations

from django_filters import rest_framework as filters

from accounts.models import Partner
from deliveries.models import Delivery, PartnerEndpoint, Pull, Route
from mft.filters import StableOrderingFilter, UtcIsoDateTimeFilter


class PartnerEndpointFilter(filters.FilterSet):
    partner = filters.ModelChoiceFilter(queryset=Partner.objects.all())
    enabled = filters.BooleanFilter()

    class Meta:
        model = PartnerEndpoint
        fields = ["partner", "enabled"]


class RouteFilter(filters.FilterSet):
    endpoint = filters.ModelChoiceFilter(queryset=PartnerEndpoint.objects.all())
    partner = filters.ModelChoiceFilter(queryset=Partner.objects.all(),
                                        field_name="endpoint__partner")
    trigger = filters.ChoiceFilter(choices=Route.Trigger.choices)
    enabled = filters.BooleanFilter()

    class Meta:
        model = Route
        fields = ["endpoint", "partner", "trigger", "enabled"]


class PullFilter(filters.FilterSet):
    endpoint = filters.ModelChoiceFilter(queryset=PartnerEndpoint.objects.all())
    partner = filters.ModelChoiceFilter(queryset=Partner.objects.all(),
                                        field_name="endpoint__partner")
    enabled = filters.BooleanFilter()

    class Meta:
        model = Pull
        fields = ["endpoint", "partner", "enabled"]


class DeliveryFilter(filters.FilterSet):
    partner = filters.ModelChoiceFilter(queryset=Partner.objects.all(),
                                        field_name="endpoint__partner")
    endpoint = filters.ModelChoiceFilter(queryset=PartnerEndpoint.objects.all())
    route = filters.ModelChoiceFilter(queryset=Route.objects.all())
    pull = filters.ModelChoiceFilter(queryset=Pull.objects.all())
    file = filters.NumberFilter(field_name="stored_file_id", min_value=1,
                                max_value=2**63 - 1)
    direction = filters.ChoiceFilter(choices=Delivery.Direction.choices)
    status = filters.MultipleChoiceFilter(choices=Delivery.Status.choices)
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    ordering = StableOrderingFilter(fields=("created_at", "finished_at", "status", "id"))

    class Meta:
        model = Delivery
        fields = ["partner", "endpoint", "route", "pull", "file", "direction", "status",
                  "created_after", "created_before"]
