"""Interim Django admin views for deliveries: read-only, secrets never shown; re-send,
retry and cancel go through the services (and so into the audit log)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.admin import ReadOnlyAdmin
from audit.events import Origin
from deliveries import services
from deliveries.models import Delivery, DeliveryAttempt, PartnerEndpoint, Pull, Route
from mft import client_address
from mft.errors import PortsideError

SECRET_FIELDS = ["password_secret", "client_key_secret", "secret_context"]


@admin.register(PartnerEndpoint)
class PartnerEndpointAdmin(ReadOnlyAdmin):
    list_display = ["name", "partner", "tls_mode", "host", "port", "username", "enabled"]
    list_filter = ["enabled", "tls_mode"]
    search_fields = ["name", "host", "partner__name"]
    exclude = SECRET_FIELDS


@admin.register(Route)
class RouteAdmin(ReadOnlyAdmin):
    list_display = ["name", "endpoint", "source_partner", "source_user", "source_folder",
                    "filename_pattern", "trigger", "cron", "pgp_encrypt", "enabled"]
    list_filter = ["enabled", "trigger", "pgp_encrypt"]


@admin.register(Pull)
class PullAdmin(ReadOnlyAdmin):
    list_display = ["name", "endpoint", "remote_folder", "filename_pattern", "local_user",
                    "after_download", "cron", "enabled", "last_listed_at", "last_error"]


class AttemptInline(admin.TabularInline):  # type: ignore[type-arg]
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["number", "worker", "stage", "started_at", "finished_at", "seconds",
                       "outcome", "bytes_transferred", "resumed_from", "remote_reply", "error",
                       "details"]
    fields = tuple(readonly_fields)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "direction", "status", "endpoint", "local_path", "remote_path",
                    "verified_by", "attempts", "created_at", "finished_at"]
    list_filter = ["status", "direction"]
    search_fields = ["local_path", "remote_path", "source_sha256", "sent_sha256"]
    inlines = [AttemptInline]
    actions = ["resend", "retry_now", "cancel"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Needed for the actions to be offered; the change form shows no editable field.
        return bool(request.user.is_superuser)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Delivery._meta.fields]

    def _each(self, request: HttpRequest, rows: QuerySet[Delivery], action: Any,
              done: str) -> None:
        origin = Origin(source_ip=client_address.client_ip(request), protocol="web").as_user(
            request.user)
        for delivery in rows:
            try:
                action(delivery, origin=origin)
            except PortsideError as exc:
                messages.error(request, f"Delivery {delivery.pk}: {exc}")
            else:
                messages.success(request, f"Delivery {delivery.pk}: {done}.")

    @admin.action(description="Re-send the selected deliveries")
    def resend(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        self._each(request, queryset, services.resend, "re-sent as a new delivery")

    @admin.action(description="Retry the selected waiting deliveries now")
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        self._each(request, queryset, services.retry_now, "queued")

    @admin.action(description="Cancel the selected waiting deliveries")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        self._each(request, queryset, services.cancel, "cancelled")
