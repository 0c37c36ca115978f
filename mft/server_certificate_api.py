"""REST views for the gateway's server certificate: show it, replace it (PEM, PKCS#12, or a
generated self-signed one). Running gateways give new sessions the new certificate."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api_auth import origin_of
from accounts.permissions import ALL_ACTIONS, ActionScope
from mft import server_certificate as certificate
from mft.errors import InvalidInput, NotFound
from mft.viewsets import validated


class ServerCertificateSerializer(serializers.Serializer[Any]):
    subject = serializers.CharField()
    issuer = serializers.CharField()
    not_after = serializers.DateTimeField()
    sha256 = serializers.CharField()


class ReplacementSerializer(serializers.Serializer[Any]):
    certificate = serializers.CharField(required=False, trim_whitespace=False,
                                        help_text="PEM certificate (chain)")
    key = serializers.CharField(required=False, write_only=True, trim_whitespace=False,
                                help_text="PEM private key")
    pkcs12 = serializers.CharField(required=False, write_only=True,
                                   help_text="PKCS#12 bundle, base64")
    password = serializers.CharField(required=False, write_only=True, allow_blank=True,
                                     help_text="the bundle's password")
    generate = serializers.ListField(child=serializers.CharField(max_length=253),
                                     required=False, min_length=1,
                                     help_text="DNS names or addresses of a self-signed one")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kinds = [k for k in ("certificate", "pkcs12", "generate") if k in attrs]
        if len(kinds) != 1:
            raise serializers.ValidationError(
                "give exactly one of certificate (with key), pkcs12, or generate")
        if "certificate" in attrs and "key" not in attrs:
            raise serializers.ValidationError({"key": "a PEM certificate needs its key"})
        return attrs


def _replace(body: dict[str, Any], request: Request) -> dict[str, str]:
    """Install what the body holds through the certificate service."""
    origin = origin_of(request)
    if "generate" in body:
        return certificate.generate(body["generate"], origin=origin)
    if "pkcs12" in body:
        try:
            bundle = base64.b64decode(body["pkcs12"], validate=True)
        except binascii.Error:
            raise InvalidInput("pkcs12 is not base64") from None
        password = body.get("password")
        return certificate.import_pkcs12(bundle, password.encode() if password else None,
                                         origin=origin)
    return certificate.import_pem(body["certificate"].encode(), body["key"].encode(),
                                  origin=origin)


@extend_schema(tags=["server-certificate"])
class ServerCertificateView(APIView):
    """The FTPS gateway's own certificate (install-wide): one object, not a list of rows."""

    permission_classes = [ActionScope]  # GET: `read`; POST: `admin`
    install_wide_actions = (ALL_ACTIONS,)
    serializer_class = ServerCertificateSerializer

    @extend_schema(summary="Show the installed server certificate",
                   responses={200: ServerCertificateSerializer})
    def get(self, request: Request) -> Response:
        try:
            return Response(certificate.describe(settings.TLS_CERT_FILE))
        except OSError:
            raise NotFound("no server certificate is installed yet") from None

    @extend_schema(summary="Replace the server certificate: PEM pair, PKCS#12, or generated",
                   request=ReplacementSerializer, responses={200: ServerCertificateSerializer})
    def post(self, request: Request) -> Response:
        body = validated(ReplacementSerializer, request)
        try:
            return Response(_replace(body, request))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
