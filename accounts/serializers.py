"""API representations of partners, users, credentials, tokens and bans.

Serializers check the shape of input (types, lengths, choices) so bad input is a 400 with
field messages; the services check the rules and do the work.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from accounts import networks, users
from accounts.models import (
    PERMISSION_WORDS,
    PROTOCOLS,
    ApiToken,
    Ban,
    ClientCertificate,
    Partner,
    PgpKey,
    User,
)
from accounts.tokens import SCOPES
from mft.errors import InvalidInput
from transfers import pgp

MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1
MAX_PEM = 64 * 1024


def _networks(values: list[str]) -> list[str]:
    """Return normalized networks, or raise a field validation error."""
    try:
        return networks.normalize_networks(values)
    except InvalidInput as exc:
        raise serializers.ValidationError(str(exc)) from None


class PartnerSerializer(serializers.ModelSerializer[Partner]):
    class Meta:
        model = Partner
        fields = ["id", "name", "contact_name", "contact_email", "contact_phone", "status",
                  "notes", "created_at"]
        read_only_fields = ["id", "created_at"]
        # The service checks names case-insensitively and answers a clash with 409.
        extra_kwargs = {"name": {"validators": []}, "notes": {"max_length": 10000}}


class UserSerializer(serializers.ModelSerializer[User]):
    partner_name = serializers.CharField(source="partner.name", read_only=True,
                                         allow_null=True, default=None)
    # A plain string: an account without an address has "", which format "email" rejects.
    email = serializers.CharField(read_only=True)

    class Meta:
        model = User
        fields = ["id", "username", "role", "partner", "partner_name", "email", "is_active",
                  "home_dir", "quota_bytes", "quota_files", "allowed_protocols",
                  "login_method", "permissions", "allowed_ips", "expires_at", "max_sessions",
                  "last_login", "date_joined", "password_changed_at", "must_change_password",
                  "allow_clear_data", "allow_plain_ftp", "tls_reuse_exempt",
                  "policy_exception_reason", "ftps_mfa_required", "upload_bytes_per_second",
                  "download_bytes_per_second"]
        read_only_fields = fields


class UserSettingsSerializer(serializers.Serializer[Any]):
    """The fields an admin may set on a user, at creation or later (PATCH)."""

    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    quota_bytes = serializers.IntegerField(required=False, allow_null=True, min_value=0,
                                           max_value=MAX_BIGINT)
    quota_files = serializers.IntegerField(required=False, allow_null=True, min_value=0,
                                           max_value=MAX_INT)
    allowed_protocols = serializers.ListField(
        child=serializers.ChoiceField(choices=PROTOCOLS), required=False, max_length=20)
    login_method = serializers.ChoiceField(choices=User.LoginMethod.choices, required=False)
    permissions = serializers.ListField(
        child=serializers.ChoiceField(choices=PERMISSION_WORDS), required=False,
        max_length=20)
    allowed_ips = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False,
        max_length=networks.MAX_NETWORKS)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    max_sessions = serializers.IntegerField(required=False, allow_null=True, min_value=0,
                                            max_value=MAX_INT)
    ftps_mfa_required = serializers.BooleanField(
        required=False, help_text="on FTPS, require the authenticator's code after the "
        "password, or a registered client certificate")
    upload_bytes_per_second = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_BIGINT,
        help_text="FTPS upload bandwidth shared by the user's transfers; 0: no limit")
    download_bytes_per_second = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_BIGINT,
        help_text="FTPS download bandwidth shared by the user's transfers; 0: no limit")

    def validate_allowed_ips(self, value: list[str]) -> list[str]:
        return _networks(value)


class UserCreateSerializer(UserSettingsSerializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=User.Role.choices, default=User.Role.PARTNER,
                                   help_text="any role but admin")
    partner = serializers.PrimaryKeyRelatedField(queryset=Partner.objects.all(),
                                                 required=False, allow_null=True)
    password = serializers.CharField(required=False, write_only=True, max_length=128,
                                     trim_whitespace=False)
    generate_password = serializers.BooleanField(default=False)

    def validate_role(self, value: str) -> str:
        if value not in users.CREATABLE_ROLES:
            raise serializers.ValidationError(
                f"the API creates {', '.join(users.CREATABLE_ROLES)} users; admins are "
                "created with manage.py")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("password") is not None and attrs.get("generate_password"):
            raise serializers.ValidationError(
                {"password": ["give a password or set generate_password, not both"]})
        return attrs


class NewUserSerializer(UserSerializer):
    """A created user; `password` holds the generated password, shown this once."""

    password = serializers.CharField(read_only=True, allow_null=True)

    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "password"]
        read_only_fields = fields


class PasswordResetSerializer(serializers.Serializer[Any]):
    """A generated password, shown this once."""

    username = serializers.CharField(read_only=True)
    password = serializers.CharField(read_only=True)


class IssuedAuthenticatorSerializer(serializers.Serializer[Any]):
    """A new authenticator's secret for FTPS one-time codes, shown this once."""

    username = serializers.CharField(read_only=True)
    secret = serializers.CharField(read_only=True, help_text="base32, for typing into an app")
    otpauth_url = serializers.CharField(read_only=True, help_text="otpauth://totp/… for a QR")


class ApiTokenSerializer(serializers.ModelSerializer[ApiToken]):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "user", "username", "name", "prefix", "scopes", "allowed_ips",
                  "expires_at", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class ApiTokenCreateSerializer(serializers.Serializer[Any]):
    user = serializers.PrimaryKeyRelatedField(queryset=User.objects.all(), required=False,
                                              help_text="whose token; the caller by default")
    name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=SCOPES),
                                   min_length=1, max_length=len(SCOPES))
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    allowed_ips = serializers.ListField(child=serializers.CharField(max_length=64),
                                        required=False, max_length=networks.MAX_NETWORKS)

    def validate_expires_at(self, value: Any) -> Any:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("expiry must be in the future")
        return value

    def validate_allowed_ips(self, value: list[str]) -> list[str]:
        return _networks(value)


class NewApiTokenSerializer(ApiTokenSerializer):
    """A created token; `secret` is shown this once and never stored."""

    secret = serializers.CharField(read_only=True)

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class ClientCertificateSerializer(serializers.ModelSerializer[ClientCertificate]):
    expired = serializers.SerializerMethodField()

    class Meta:
        model = ClientCertificate
        fields = ["id", "partner", "user", "fingerprint_sha256", "subject", "issuer",
                  "serial", "not_before", "not_after", "expired", "is_ca", "created_at", "pem"]
        read_only_fields = fields

    def get_expired(self, cert: ClientCertificate) -> bool:
        return cert.not_after <= timezone.now()


class ClientCertificateCreateSerializer(serializers.Serializer[Any]):
    partner = serializers.PrimaryKeyRelatedField(queryset=Partner.objects.all())
    user = serializers.PrimaryKeyRelatedField(queryset=User.objects.all(), required=False,
                                              allow_null=True)
    pem = serializers.CharField(max_length=MAX_PEM, trim_whitespace=False)


class PgpKeySerializer(serializers.ModelSerializer[PgpKey]):
    class Meta:
        model = PgpKey
        fields = ["id", "partner", "fingerprint", "user_ids", "algorithm", "bits",
                  "expires_at", "created_at", "armored"]
        read_only_fields = fields


class PgpKeyCreateSerializer(serializers.Serializer[Any]):
    partner = serializers.PrimaryKeyRelatedField(queryset=Partner.objects.all())
    armored = serializers.CharField(max_length=pgp.MAX_KEY_TEXT, trim_whitespace=False)


class BanSerializer(serializers.ModelSerializer[Ban]):
    active = serializers.SerializerMethodField()

    class Meta:
        model = Ban
        fields = ["id", "address", "reason", "created_at", "expires_at", "lifted_at",
                  "lifted_by", "active"]
        read_only_fields = fields

    def get_active(self, ban: Ban) -> bool:
        return ban.lifted_at is None and ban.expires_at > timezone.now()
