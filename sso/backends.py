"""The authentication backend that turns an OpenID Connect callback into a signed-in user.

mozilla-django-oidc exchanges the code (with PKCE), checks the ID token's signature and
nonce, and reads userinfo; this subclass adds the audience and issuer checks the library
leaves out, and hands the claims to `sso.services.sign_in`.
"""

from __future__ import annotations

from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from accounts.models import User
from mft import client_address
from mft.errors import TemporarilyUnavailable
from sso import discovery, services


class OidcBackend(OIDCAuthenticationBackend):
    """Authenticate the OIDC callback's code; every other authenticate() call gets None."""

    get_settings = staticmethod(discovery.setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The parent resolves the provider's endpoints here; with discovery that is a
        # network call, and every password login instantiates every backend. They are
        # resolved in authenticate(), for OIDC callbacks only.
        self.UserModel = get_user_model()

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> User | None:
        """Return the user for an OIDC callback request, when single sign-on is on."""
        if request is None or not settings.OIDC_ENABLED or "code" not in request.GET:
            return None
        super().__init__()
        try:
            user: User | None = super().authenticate(request, **kwargs)
        except services.AnswerRejected:
            raise
        except SuspiciousOperation as suspicious:
            raise self._rejected(str(suspicious)) from None
        except requests.HTTPError as refused:
            # The provider refused the code (forged, replayed or expired) or the token.
            answer = refused.response
            where = f"{answer.url} answered HTTP {answer.status_code}" if answer is not None \
                else "the provider refused the request"
            raise self._rejected(where) from None
        except (jwt.PyJWTError, KeyError, ValueError) as malformed:
            # PyJWT's errors (expired, malformed token), a missing field, bad JSON.
            raise self._rejected(f"malformed answer ({type(malformed).__name__}: "
                                 f"{malformed})") from None
        except requests.RequestException as outage:
            raise TemporarilyUnavailable(f"the identity provider cannot be reached "
                                         f"({type(outage).__name__})") from None
        return user

    def _rejected(self, problem: str) -> services.AnswerRejected:
        """Audit a provider answer that failed a check; return the error to raise."""
        return services.reject_answer(problem, source_ip=client_address.client_ip(self.request))

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        """Check the signature and nonce (the library), then audience and issuer."""
        payload: dict[str, Any] = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if self.OIDC_RP_CLIENT_ID not in audiences or (
                len(audiences) > 1 and payload.get("azp") != self.OIDC_RP_CLIENT_ID):
            raise SuspiciousOperation("the ID token was not issued to this client")
        issuer = str(payload.get("iss", "")).rstrip("/")
        if settings.OIDC_ISSUER and issuer != settings.OIDC_ISSUER.rstrip("/"):
            raise SuspiciousOperation(f"the ID token comes from another issuer ({issuer})")
        return payload

    def get_or_create_user(self, access_token: str, id_token: str,
                           payload: dict[str, Any]) -> User:
        """Sign in through the service; mark the user verified when the provider did MFA."""
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload.get("sub"):
            raise self._rejected("userinfo describes another subject than the ID token")
        signed = services.sign_in(claims_of(payload, userinfo),
                                  source_ip=client_address.client_ip(self.request))
        # django-otp's convention for an authentication that verified a device.
        signed.user.otp_device = signed.verified_by  # type: ignore[attr-defined]
        return signed.user


def claims_of(id_token: dict[str, Any], userinfo: dict[str, Any]) -> services.Claims:
    """Return the claims Portside uses; `amr` only from the signed ID token."""
    merged = {**id_token, **userinfo}
    return services.Claims(
        issuer=str(id_token.get("iss", "")).rstrip("/"),
        subject=str(id_token["sub"]),
        username=str(merged.get(settings.OIDC_USERNAME_CLAIM) or ""),
        email=str(merged.get("email") or ""),
        first_name=str(merged.get("given_name") or ""),
        last_name=str(merged.get("family_name") or ""),
        groups=_values(merged.get(settings.OIDC_ROLE_CLAIM)),
        amr=_values(id_token.get("amr")),
    )


def _values(claim: Any) -> tuple[str, ...]:
    """Return a claim holding one value or a list of them as a tuple of strings."""
    if claim is None:
        return ()
    if isinstance(claim, str):
        return (claim,)
    return tuple(str(item) for item in claim)
