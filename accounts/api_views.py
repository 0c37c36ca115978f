"""REST views for partners, users, credentials, API tokens and bans: thin translation onto
the accounts services. Who may do what is decided in accounts.permissions."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import bans, credentials, otp_login, partners, tokens, users
from accounts import filters as account_filters
from accounts import serializers as s
from accounts.api_auth import origin_of
from accounts.models import ApiToken, Ban, ClientCertificate, Partner, PgpKey, User
from accounts.permissions import (
    ALL_ACTIONS,
    holds,
    limit_to_partner,
    require_admin_unless_own,
    require_may_manage,
    require_own_partner,
)
from mft.errors import NotFound
from mft.viewsets import PortsideViewSet, validated

_NO_BODY = OpenApiResponse(description="done; no body")


@extend_schema_view(list=extend_schema(summary="List partners"),
                    retrieve=extend_schema(summary="Show a partner"))
@extend_schema(tags=["partners"])
class PartnerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortsideViewSet):
    """Trading partners. A partner-scoped token sees only its own."""

    serializer_class = s.PartnerSerializer
    filterset_class = account_filters.PartnerFilter
    install_wide_actions = ("create", "partial_update", "destroy")

    def get_queryset(self) -> QuerySet[Partner]:
        return limit_to_partner(Partner.objects.all(), self.request, "pk")

    @extend_schema(summary="Create a partner", request=s.PartnerSerializer,
                   responses={201: s.PartnerSerializer})
    def create(self, request: Request) -> Response:
        fields = validated(s.PartnerSerializer, request)
        partner = partners.create_partner(origin=origin_of(request), **fields)
        return Response(s.PartnerSerializer(partner).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Change a partner (status=suspended suspends it)",
                   request=s.PartnerSerializer, responses={200: s.PartnerSerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        fields = validated(s.PartnerSerializer, request, partial=True)
        partner = partners.update_partner(self.get_object(), origin=origin_of(request),
                                          **fields)
        return Response(s.PartnerSerializer(partner).data)

    @extend_schema(summary="Delete a partner, or suspend it when it has users or files",
                   responses={200: s.PartnerSerializer, 204: _NO_BODY})
    def destroy(self, request: Request, pk: str) -> Response:
        suspended = partners.remove_partner(self.get_object(), origin=origin_of(request))
        if suspended is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(s.PartnerSerializer(suspended).data)


@extend_schema_view(list=extend_schema(summary="List users"),
                    retrieve=extend_schema(summary="Show a user"))
@extend_schema(tags=["users"])
class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortsideViewSet):
    """Users. A partner-scoped token sees only its partner's; only the admin scope changes."""

    serializer_class = s.UserSerializer
    filterset_class = account_filters.UserFilter

    def get_queryset(self) -> QuerySet[User]:
        return limit_to_partner(User.objects.select_related("partner"), self.request)

    def _target(self) -> User:
        """Return the user named in the URL, if the caller may manage it."""
        user = self.get_object()
        require_may_manage(self.request, user)
        return user

    @extend_schema(summary="Create a user (password given, generated, or none)",
                   request=s.UserCreateSerializer, responses={201: s.NewUserSerializer})
    def create(self, request: Request) -> Response:
        fields = validated(s.UserCreateSerializer, request)
        partner = fields.pop("partner", None)
        require_own_partner(request, partner.pk if partner else None)
        made = users.create_user(fields.pop("username"), role=fields.pop("role"),
                                 partner=partner, origin=origin_of(request), **fields)
        body = {**s.UserSerializer(made.user).data, "password": made.password}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Change a user's quota, protocols, login method, permissions…",
                   request=s.UserSettingsSerializer, responses={200: s.UserSerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        fields = validated(s.UserSettingsSerializer, request, partial=True)
        user = users.update_user(self._target(), origin=origin_of(request), **fields)
        return Response(s.UserSerializer(user).data)

    @extend_schema(summary="Enable a user", request=None, responses={200: s.UserSerializer})
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str) -> Response:
        user = users.set_active(self._target(), True, origin=origin_of(request))
        return Response(s.UserSerializer(user).data)

    @extend_schema(summary="Disable a user: logins and tokens are refused",
                   request=None, responses={200: s.UserSerializer})
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str) -> Response:
        user = users.set_active(self._target(), False, origin=origin_of(request))
        return Response(s.UserSerializer(user).data)

    @extend_schema(summary="Reset a user's password to a generated one, shown once",
                   request=None, responses={200: s.PasswordResetSerializer})
    @action(detail=True, methods=["post"], url_path="reset-password")
    def reset_password(self, request: Request, pk: str) -> Response:
        user, secret = users.reset_password(self._target(), origin=origin_of(request))
        return Response({"username": user.username, "password": secret})

    @extend_schema(summary="Issue a new authenticator for FTPS one-time codes, shown once",
                   request=None, responses={201: s.IssuedAuthenticatorSerializer})
    @action(detail=True, methods=["post"])
    def authenticator(self, request: Request, pk: str) -> Response:
        user = self._target()
        issued = otp_login.issue_authenticator(user, origin=origin_of(request))
        body = {"username": user.username, "secret": issued.secret,
                "otpauth_url": issued.otpauth_url}
        return Response(body, status=status.HTTP_201_CREATED)


@extend_schema_view(list=extend_schema(summary="List API tokens (never their secrets)"),
                    retrieve=extend_schema(summary="Show an API token (never its secret)"))
@extend_schema(tags=["tokens"])
class ApiTokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortsideViewSet):
    """API tokens: a caller sees its own; the admin scope sees (its partner's) all."""

    serializer_class = s.ApiTokenSerializer
    filterset_class = account_filters.ApiTokenFilter
    action_scopes = {"revoke": "read"}

    def get_queryset(self) -> QuerySet[ApiToken]:
        rows = ApiToken.objects.select_related("user").order_by("-created_at", "-id")
        if not holds(self.request, "admin"):
            return rows.filter(user=self.request.user.pk)
        return limit_to_partner(rows, self.request, "user__partner_id")

    @extend_schema(summary="Create an API token; its secret is shown this once",
                   request=s.ApiTokenCreateSerializer, responses={201: s.NewApiTokenSerializer})
    def create(self, request: Request) -> Response:
        fields = validated(s.ApiTokenCreateSerializer, request)
        owner: User = fields.pop("user", None) or request.user  # type: ignore[assignment]
        if not limit_to_partner(User.objects.filter(pk=owner.pk), request).exists():
            raise NotFound("no such user")
        require_may_manage(request, owner)
        made = tokens.create_api_token(owner, origin=origin_of(request), **fields)
        body = {**s.ApiTokenSerializer(made.token).data, "secret": made.secret}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Revoke an API token (your own, or any with the admin scope)",
                   request=None, responses={200: s.ApiTokenSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        token = self.get_object()
        require_admin_unless_own(request, token.user_id)
        tokens.revoke(token, origin=origin_of(request))
        return Response(s.ApiTokenSerializer(token).data)


@extend_schema_view(list=extend_schema(summary="List client certificates"),
                    retrieve=extend_schema(summary="Show a client certificate"))
@extend_schema(tags=["certificates"])
class ClientCertificateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                               PortsideViewSet):
    """Partners' X.509 client certificates (and CAs), parsed and validated on upload."""

    serializer_class = s.ClientCertificateSerializer
    filterset_class = account_filters.ClientCertificateFilter

    def get_queryset(self) -> QuerySet[ClientCertificate]:
        return limit_to_partner(ClientCertificate.objects.all(), self.request)

    @extend_schema(summary="Register a PEM client certificate (expired ones are refused)",
                   request=s.ClientCertificateCreateSerializer,
                   responses={201: s.ClientCertificateSerializer})
    def create(self, request: Request) -> Response:
        fields = validated(s.ClientCertificateCreateSerializer, request)
        require_own_partner(request, fields["partner"].pk)
        cert = credentials.add_certificate(fields["partner"], fields["pem"],
                                           user=fields.get("user"), origin=origin_of(request))
        return Response(s.ClientCertificateSerializer(cert).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(summary="Remove a client certificate", responses={204: _NO_BODY})
    def destroy(self, request: Request, pk: str) -> Response:
        credentials.remove_certificate(self.get_object(), origin=origin_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(list=extend_schema(summary="List partners' PGP public keys"),
                    retrieve=extend_schema(summary="Show a PGP public key"))
@extend_schema(tags=["pgp-keys"])
class PgpKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortsideViewSet):
    """Partners' OpenPGP public keys, vetted on upload (expiry, revocation, strength)."""

    serializer_class = s.PgpKeySerializer
    filterset_class = account_filters.PgpKeyFilter

    def get_queryset(self) -> QuerySet[PgpKey]:
        return limit_to_partner(PgpKey.objects.order_by("id"), self.request)

    @extend_schema(summary="Register an armored OpenPGP public key",
                   request=s.PgpKeyCreateSerializer, responses={201: s.PgpKeySerializer})
    def create(self, request: Request) -> Response:
        fields = validated(s.PgpKeyCreateSerializer, request)
        require_own_partner(request, fields["partner"].pk)
        key = credentials.add_pgp_key(fields["partner"], fields["armored"],
                                      origin=origin_of(request))
        return Response(s.PgpKeySerializer(key).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Remove a PGP public key", responses={204: _NO_BODY})
    def destroy(self, request: Request, pk: str) -> Response:
        credentials.remove_pgp_key(self.get_object(), origin=origin_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(list=extend_schema(summary="List bans"),
                    retrieve=extend_schema(summary="Show a ban"))
@extend_schema(tags=["bans"])
class BanViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortsideViewSet):
    """Addresses banned after repeated failed logins (install-wide)."""

    serializer_class = s.BanSerializer
    filterset_class = account_filters.BanFilter
    install_wide_actions = (ALL_ACTIONS,)
    queryset = Ban.objects.all()

    @extend_schema(summary="Lift a ban", request=None, responses={200: s.BanSerializer})
    @action(detail=True, methods=["post"])
    def lift(self, request: Request, pk: str) -> Response:
        ban = self.get_object()
        bans.lift_ban(ban, origin=origin_of(request))
        return Response(s.BanSerializer(ban).data)

