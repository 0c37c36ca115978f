"""API representations of endpoints, routes, pulls, deliveries (receipts) and attempts.

Endpoint secrets (password, client key) are write-only: the API says whether one is set,
never what it is.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import Partner, PgpKey, User
from deliveries import receipts
from deliveries.models import MAX_STABLE_SECONDS, Delivery, PartnerEndpoint, Pull, Route

MAX_PEM = 256 * 1024


class PartnerEndpointSerializer(serializers.ModelSerializer[PartnerEndpoint]):
    password_set = serializers.SerializerMethodField()
    client_key_set = serializers.SerializerMethodField()

    class Meta:
        model = PartnerEndpoint
        fields = ["id", "partner", "name", "tls_mode", "host", "port", "tls_server_name",
                  "username", "password_set", "client_cert_pem", "client_key_set",
                  "remote_folder", "data_mode", "ca_bundle_pem", "pinned_sha256",
                  "timeout_seconds", "max_connections", "use_temp_name", "enabled",
                  "created_at", "updated_at"]
        read_only_fields = fields

    def get_password_set(self, endpoint: PartnerEndpoint) -> bool:
        return bool(endpoint.password_secret)

    def get_client_key_set(self, endpoint: PartnerEndpoint) -> bool:
        return bool(endpoint.client_key_secret)


class PartnerEndpointWriteSerializer(serializers.Serializer[Any]):
    """What an admin sets on an endpoint; a password or key given replaces the stored one."""

    partner = serializers.PrimaryKeyRelatedField(queryset=Partner.objects.all())
    name = serializers.CharField(max_length=120)
    tls_mode = serializers.ChoiceField(choices=PartnerEndpoint.TlsMode.choices, required=False)
    host = serializers.CharField(max_length=255)
    port = serializers.IntegerField(min_value=1, max_value=65535, required=False)
    tls_server_name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, required=False, allow_blank=True,
                                     write_only=True, trim_whitespace=False)
    client_cert_pem = serializers.CharField(max_length=MAX_PEM, required=False,
                                            allow_blank=True)
    client_key_pem = serializers.CharField(max_length=MAX_PEM, required=False,
                                           allow_blank=True, write_only=True)
    remote_folder = serializers.CharField(max_length=1024, required=False)
    data_mode = serializers.ChoiceField(choices=PartnerEndpoint.DataMode.choices,
                                        required=False)
    ca_bundle_pem = serializers.CharField(max_length=MAX_PEM, required=False, allow_blank=True)
    pinned_sha256 = serializers.CharField(max_length=100, required=False, allow_blank=True)
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=86400, required=False)
    max_connections = serializers.IntegerField(min_value=1, max_value=100, required=False)
    use_temp_name = serializers.BooleanField(required=False)
    enabled = serializers.BooleanField(required=False)


class RouteSerializer(serializers.ModelSerializer[Route]):
    endpoint = serializers.PrimaryKeyRelatedField(queryset=PartnerEndpoint.objects.all())
    source_partner = serializers.PrimaryKeyRelatedField(
        queryset=Partner.objects.all(), required=False, allow_null=True)
    source_user = serializers.PrimaryKeyRelatedField(
        queryset=User.objects.all(), required=False, allow_null=True)
    pgp_key = serializers.PrimaryKeyRelatedField(
        queryset=PgpKey.objects.all(), required=False, allow_null=True)

    class Meta:
        model = Route
        fields = ["id", "name", "endpoint", "source_partner", "source_user", "source_folder",
                  "include_subfolders", "filename_pattern", "remote_folder", "pgp_encrypt",
                  "pgp_sign", "pgp_key", "trigger", "cron", "time_zone", "window_start",
                  "window_end", "enabled", "active_since", "created_at"]
        read_only_fields = ["id", "active_since", "created_at"]
        # The service checks names and answers a clash with a clear error.
        extra_kwargs: dict[str, dict[str, Any]] = {"name": {"validators": []}}


class PullSerializer(serializers.ModelSerializer[Pull]):
    endpoint = serializers.PrimaryKeyRelatedField(queryset=PartnerEndpoint.objects.all())
    local_user = serializers.PrimaryKeyRelatedField(queryset=User.objects.all())
    max_files_per_run = serializers.IntegerField(min_value=1, max_value=100_000,
                                                 required=False)
    stable_seconds = serializers.IntegerField(min_value=0, max_value=MAX_STABLE_SECONDS,
                                              required=False)
    min_age_seconds = serializers.IntegerField(min_value=0, max_value=30 * 86400,
                                               required=False)

    class Meta:
        model = Pull
        fields = ["id", "name", "endpoint", "remote_folder", "filename_pattern", "local_user",
                  "local_folder", "after_download", "move_to_folder", "cron", "time_zone",
                  "max_files_per_run", "stable_seconds", "min_age_seconds", "enabled",
                  "last_listed_at", "last_error", "created_at"]
        read_only_fields = ["id", "last_listed_at", "last_error", "created_at"]
        extra_kwargs: dict[str, dict[str, Any]] = {"name": {"validators": []}}


class DeliveryReceiptSerializer(serializers.Serializer[Delivery]):
    """A delivery receipt: what was sent or fetched, where, verified how."""

    id = serializers.IntegerField()
    direction = serializers.ChoiceField(choices=Delivery.Direction.choices)
    status = serializers.ChoiceField(choices=Delivery.Status.choices)
    partner = serializers.CharField()
    endpoint = serializers.CharField()
    host = serializers.CharField()
    route = serializers.CharField(allow_null=True)
    pull = serializers.CharField(allow_null=True)
    file_id = serializers.IntegerField(allow_null=True)
    local_owner = serializers.CharField()
    local_path = serializers.CharField()
    source_size = serializers.IntegerField(allow_null=True)
    source_sha256 = serializers.CharField()
    remote_path = serializers.CharField()
    pgp_encrypted = serializers.BooleanField()
    pgp_signed = serializers.BooleanField()
    sent_size = serializers.IntegerField(allow_null=True)
    sent_sha256 = serializers.CharField()
    verified_by = serializers.CharField()
    attempts = serializers.IntegerField()
    requested_by = serializers.CharField()
    resend_of = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()

    def to_representation(self, instance: Delivery) -> dict[str, Any]:
        return receipts.receipt(instance)


class DeliveryAttemptSerializer(serializers.Serializer[Any]):
    """One try at a delivery."""

    number = serializers.IntegerField()
    worker = serializers.CharField()
    stage = serializers.CharField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    seconds = serializers.FloatField(allow_null=True)
    outcome = serializers.CharField()
    bytes = serializers.IntegerField()
    resumed_from = serializers.IntegerField()
    remote_reply = serializers.CharField()
    error = serializers.CharField()
    details = serializers.DictField()
