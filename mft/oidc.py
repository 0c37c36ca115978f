"""Read the MFT_OIDC_* variables: single sign-on to the dashboard with OpenID Connect.

Every variable is read (so the README test sees it) even when single sign-on is off. It is
on when a client id is set; the provider's endpoints come from its issuer's discovery
document (fetched when first needed, see sso.discovery) unless given one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from mft.env import env_int, env_list, env_secret, env_str

# Kept in step with accounts.models.User.Role; settings cannot import models. Partner and
# API accounts never sign in through single sign-on.
DASHBOARD_ROLES = ("admin", "operator", "auditor")
SIGN_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "HS256")
# RFC 8176 authentication method references that mean the provider checked more than a
# password: multiple factors or channels, a one-time code, a hardware or software key, a
# smart card.
DEFAULT_MFA_AMR = ["mfa", "mca", "otp", "hwk", "swk", "sc"]
_ENDPOINTS = {
    "authorization": "MFT_OIDC_AUTHORIZATION_ENDPOINT",
    "token": "MFT_OIDC_TOKEN_ENDPOINT",
    "userinfo": "MFT_OIDC_USERINFO_ENDPOINT",
    "jwks": "MFT_OIDC_JWKS_ENDPOINT",
}


@dataclass(frozen=True)
class OidcConfig:
    """Single sign-on settings; `enabled` is False when no client id is configured."""

    enabled: bool
    issuer: str
    client_id: str
    client_secret: str
    sign_algo: str
    scopes: str
    endpoints: dict[str, str]
    username_claim: str
    role_claim: str
    role_map: dict[str, str]
    mfa_amr: frozenset[str]
    ca_file: str
    timeout: int


def oidc_from_env() -> OidcConfig:
    """Return the single sign-on settings, refusing an incomplete or malformed set."""
    config = OidcConfig(
        enabled=bool(env_str("MFT_OIDC_CLIENT_ID", "").strip()),
        issuer=env_str("MFT_OIDC_ISSUER", "").strip().rstrip("/"),
        client_id=env_str("MFT_OIDC_CLIENT_ID", "").strip(),
        client_secret=env_secret("MFT_OIDC_CLIENT_SECRET") or "",
        sign_algo=env_str("MFT_OIDC_SIGN_ALGO", "RS256").strip(),
        scopes=" ".join(env_str("MFT_OIDC_SCOPES", "openid email profile").split()),
        endpoints={name: env_str(variable, "").strip() for name, variable in _ENDPOINTS.items()},
        username_claim=env_str("MFT_OIDC_USERNAME_CLAIM", "preferred_username").strip(),
        role_claim=env_str("MFT_OIDC_ROLE_CLAIM", "groups").strip(),
        role_map=parse_role_map(env_str("MFT_OIDC_ROLE_MAP", "")),
        mfa_amr=frozenset(env_list("MFT_OIDC_MFA_AMR", DEFAULT_MFA_AMR)),
        ca_file=env_str("MFT_OIDC_CA_FILE", "").strip(),
        timeout=env_int("MFT_OIDC_TIMEOUT", 10, minimum=1),
    )
    if config.enabled:
        _validate(config)
    return config


def parse_role_map(raw: str) -> dict[str, str]:
    """Parse `claim value=role;…` into a mapping from claim value to dashboard role."""
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(";")):
        if not item:
            continue
        value, _, role = item.rpartition("=")
        value, role = value.strip(), role.strip()
        if not value:
            raise ImproperlyConfigured(f"MFT_OIDC_ROLE_MAP: {item!r} is not `claim value=role`")
        if role not in DASHBOARD_ROLES:
            raise ImproperlyConfigured(
                f"MFT_OIDC_ROLE_MAP: {role!r} is not a dashboard role "
                f"({', '.join(DASHBOARD_ROLES)})")
        mapping[value] = role
    return mapping


def _validate(config: OidcConfig) -> None:
    """Refuse a single sign-on configuration that cannot work."""
    if not config.client_secret:
        raise ImproperlyConfigured("MFT_OIDC_CLIENT_SECRET (or _FILE) is required when "
                                   "MFT_OIDC_CLIENT_ID is set")
    if config.sign_algo not in SIGN_ALGORITHMS:
        raise ImproperlyConfigured(f"MFT_OIDC_SIGN_ALGO={config.sign_algo!r} is not one of "
                                   f"{', '.join(SIGN_ALGORITHMS)}")
    if "openid" not in config.scopes.split():
        raise ImproperlyConfigured("MFT_OIDC_SCOPES must include openid")
    if not config.role_map:
        raise ImproperlyConfigured("MFT_OIDC_ROLE_MAP names no claim value: nobody could "
                                   "sign in (e.g. portside-admins=admin;portside-ops=operator)")
    if not config.username_claim or not config.role_claim:
        raise ImproperlyConfigured("MFT_OIDC_USERNAME_CLAIM and MFT_OIDC_ROLE_CLAIM must not "
                                   "be empty")
    for url in (config.issuer, *config.endpoints.values()):
        if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
            raise ImproperlyConfigured(f"MFT_OIDC_*: {url!r} is not an http(s) URL")
    needed = [n for n in ("authorization", "token", "userinfo") if not config.endpoints[n]]
    if not config.sign_algo.startswith("HS"):
        needed += [] if config.endpoints["jwks"] else ["jwks"]
    if needed and not config.issuer:
        raise ImproperlyConfigured(
            "set MFT_OIDC_ISSUER (endpoints are discovered from it) or every endpoint: "
            + ", ".join(_ENDPOINTS[n] for n in needed))
    if config.ca_file and not Path(config.ca_file).is_file():
        raise ImproperlyConfigured(f"MFT_OIDC_CA_FILE={config.ca_file!r} is not a file")
