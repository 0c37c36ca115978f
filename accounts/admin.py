"""Interim Django admin views for accounts: read-only (changes go through services), and
lifting bans (through accounts.bans)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import bans
from accounts.models import ApiToken, Ban, ClientCertificate, Partner, PgpKey, User
from audit.events import Origin
from mft import client_address


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Show rows; every change goes through the services (and so into the audit log)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Partner)
class PartnerAdmin(ReadOnlyAdmin):
    list_display = ["name", "status", "contact_name", "contact_email", "created_at"]
    search_fields = ["name"]


@admin.register(User)
class UserAdmin(ReadOnlyAdmin):
    list_display = ["username", "role", "partner", "is_active", "expires_at", "last_login"]
    list_filter = ["role", "is_active"]
    search_fields = ["username", "email"]
    exclude = ["password"]


@admin.register(ClientCertificate)
class ClientCertificateAdmin(ReadOnlyAdmin):
    list_display = ["subject", "partner", "fingerprint_sha256", "not_after", "is_ca"]


@admin.register(PgpKey)
class PgpKeyAdmin(ReadOnlyAdmin):
    list_display = ["fingerprint", "partner", "expires_at"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "user", "scopes", "created_at", "last_used_at", "revoked_at"]
    exclude = ["digest"]


@admin.register(Ban)
class BanAdmin(ReadOnlyAdmin):
    list_display = ["address", "reason", "created_at", "expires_at", "lifted_at", "lifted_by"]
    actions = ["lift"]

    @admin.action(description="Lift the selected bans")
    def lift(self, request: HttpRequest, queryset: QuerySet[Ban]) -> None:
        """Lift bans through the service, which audits each one."""
        origin = Origin(source_ip=client_address.client_ip(request), protocol="web").as_user(
            request.user)
        for ban in queryset.filter(lifted_at__isnull=True):
            bans.lift_ban(ban, origin=origin)
        messages.success(request, "Bans lifted.")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Needed for the action to be offered; the change form itself shows no editable field.
        return bool(request.user.is_superuser)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Ban._meta.fields]
