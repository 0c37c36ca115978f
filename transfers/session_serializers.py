"""API representations of live gateway sessions and of a disconnect request."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from transfers.models import GatewaySession


class GatewaySessionSerializer(serializers.ModelSerializer[GatewaySession]):
    """A logged-in FTPS session: who, from where, over which TLS, and its transfer."""

    id = serializers.CharField(source="session_id", read_only=True)
    partner_name = serializers.CharField(source="partner.name", read_only=True,
                                         allow_null=True, default=None)

    class Meta:
        model = GatewaySession
        fields = ["id", "username", "user", "partner", "partner_name", "remote_address",
                  "remote_port", "implicit", "tls_version", "tls_cipher", "started_at",
                  "last_command_at", "transfer_direction", "transfer_path", "transfer_bytes",
                  "transfer_size", "transfer_started_at", "gateway", "host", "pid",
                  "updated_at", "disconnect_requested_at", "disconnect_requested_by",
                  "disconnect_reason"]
        read_only_fields = fields


class DisconnectSerializer(serializers.Serializer[Any]):
    """Why a session is to be ended (recorded in the audit log)."""

    reason = serializers.CharField(max_length=500)
