"""Filter classes shared by the API's filter sets (django-filter)."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.db.models import QuerySet
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField


class StableOrderingFilter(filters.OrderingFilter):
    """Order by the fields asked for, then by id, so pages never overlap or skip rows."""

    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        """Apply the requested ordering with id as the tie-breaker."""
        params = [param for param in value or [] if param.lstrip("-")]
        if not params:
            return qs
        fields = [self.get_ordering_value(param) for param in params]
        if not any(field.lstrip("-") == "id" for field in fields):
            fields.append("-id" if fields[-1].startswith("-") else "id")
        return qs.order_by(*fields)


class AddressFilter(filters.CharFilter):
    """Match an IP address exactly, refusing anything that is not one (400, not a DB error)."""

    field_class = forms.GenericIPAddressField


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC before it reaches the database.

    Python accepts UTC offsets up to a day and PostgreSQL only up to 15:59, and a date at
    the edge of the calendar may leave it once converted: 400, not a database error.
    """

    def to_python(self, value: Any) -> datetime.datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(datetime.UTC)
        except (OverflowError, ValueError):
            raise forms.ValidationError("date-time out of range", code="invalid") from None


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    """IsoDateTimeFilter with UtcIsoDateTimeField."""

    field_class = UtcIsoDateTimeField
