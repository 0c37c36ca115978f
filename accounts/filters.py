"""Query filters for the accounts API lists (django-filter)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone
from django_filters import rest_framework as filters

from accounts.models import ApiToken, Ban, ClientCertificate, Partner, PgpKey, User
from mft.filters import AddressFilter, StableOrderingFilter, UtcIsoDateTimeFilter


class PartnerFilter(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")
    status = filters.ChoiceFilter(choices=Partner.Status.choices)
    ordering = StableOrderingFilter(fields=("name", "created_at", "id"))

    class Meta:
        model = Partner
        fields = ["name", "status"]


class UserFilter(filters.FilterSet):
    username = filters.CharFilter(lookup_expr="icontains")
    role = filters.ChoiceFilter(choices=User.Role.choices)
    partner = filters.ModelChoiceFilter(queryset=Partner.objects.all())
    is_active = filters.BooleanFilter()
    ordering = StableOrderingFilter(fields=("username", "date_joined", "last_login", "id"))

    class Meta:
        model = User
        fields = ["username", "role", "partner", "is_active"]


class ApiTokenFilter(filters.FilterSet):
    user = filters.ModelChoiceFilter(queryset=User.objects.all())
    revoked = filters.BooleanFilter(field_name="revoked_at", lookup_expr="isnull",
                                    exclude=True)

    class Meta:
        model = ApiToken
        fields = ["user", "revoked"]


class ClientCertificateFilter(filters.FilterSet):
    partner = filters.ModelChoiceFilter(queryset=Partner.objects.all())
    user = filters.ModelChoiceFilter(queryset=User.objects.all())
    is_ca = filters.BooleanFilter()
    expires_before = UtcIsoDateTimeFilter(field_name="not_after", lookup_expr="lt")

    class Meta:
        model = ClientCertificate
        fields = ["partner", "user", "is_ca", "expires_before"]


class PgpKeyFilter(filters.FilterSet):
    partner = filters.ModelChoiceFilter(queryset=Partner.objects.all())
    fingerprint = filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = PgpKey
        fields = ["partner", "fingerprint"]


class BanFilter(filters.FilterSet):
    address = AddressFilter()
    active = filters.BooleanFilter(method="filter_active")

    class Meta:
        model = Ban
        fields = ["address", "active"]

    def filter_active(self, queryset: QuerySet[Ban], name: str, value: bool) -> QuerySet[Ban]:
        """Keep bans in force (not lifted, not expired), or only the others."""
        live = {"lifted_at__isnull": True, "expires_at__gt": timezone.now()}
        return queryset.filter(**live) if value else queryset.exclude(**live)
