"""Build django-auth-ldap's settings from the MFT_LDAP_* variables.

Every variable is read (so the README test sees it) even when no directory is configured;
python-ldap is imported only when MFT_LDAP_URI is set, since it is an optional extra
(`requirements-ldap.txt`) that needs libldap to build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from mft.env import env_bool, env_int, env_list, env_secret, env_str

# Kept in step with accounts.models.User.Role; settings cannot import models.
ROLES = ("admin", "operator", "auditor", "partner", "api")
_GROUP_TYPES = {
    "groupOfNames": "GroupOfNamesType",
    "groupOfUniqueNames": "GroupOfUniqueNamesType",
    "posixGroup": "PosixGroupType",
    "activeDirectory": "ActiveDirectoryGroupType",
    "nestedActiveDirectory": "NestedActiveDirectoryGroupType",
}
_MISSING_EXTRA = (
    "MFT_LDAP_URI is set but python-ldap or django-auth-ldap is not installed: "
    "pip install -r requirements-ldap.txt (it builds against libldap2-dev and libsasl2-dev)"
)


def _read() -> dict[str, Any]:
    """Read every MFT_LDAP_* variable, configured or not."""
    return {
        "uris": env_list("MFT_LDAP_URI"),
        "start_tls": env_bool("MFT_LDAP_START_TLS", False),
        "ca_file": env_str("MFT_LDAP_CA_FILE", ""),
        "verify": env_bool("MFT_LDAP_TLS_VERIFY", True),
        "timeout": env_int("MFT_LDAP_TIMEOUT", 10, minimum=1),
        "recheck": env_int("MFT_LDAP_RECHECK_SECONDS", 900, minimum=0),
        "bind_dn": env_str("MFT_LDAP_BIND_DN", ""),
        "bind_password": env_secret("MFT_LDAP_BIND_PASSWORD") or "",
        "user_base": env_str("MFT_LDAP_USER_SEARCH_BASE", ""),
        "user_filter": env_str("MFT_LDAP_USER_FILTER", "(uid=%(user)s)"),
        "group_base": env_str("MFT_LDAP_GROUP_SEARCH_BASE", ""),
        "group_type": env_str("MFT_LDAP_GROUP_TYPE", "groupOfNames"),
        "role_groups": env_str("MFT_LDAP_ROLE_GROUPS", ""),
        "disabled_group": env_str("MFT_LDAP_DISABLED_GROUP", ""),
        "partner_attribute": env_str("MFT_LDAP_PARTNER_ATTRIBUTE", ""),
        "home_attribute": env_str("MFT_LDAP_HOME_ATTRIBUTE", ""),
    }


def directory_settings() -> dict[str, Any]:
    """Return the AUTH_LDAP_* settings for MFT_LDAP_*; empty when no directory is configured."""
    values = _read()
    if not values["uris"]:
        return {}
    try:
        import ldap
        from django_auth_ldap import config
    except ImportError:
        raise ImproperlyConfigured(_MISSING_EXTRA) from None
    _validate(ldap, values)
    return {
        "AUTH_LDAP_SERVER_URI": " ".join(_checked_uris(values["uris"])),
        "AUTH_LDAP_START_TLS": values["start_tls"],
        "AUTH_LDAP_CONNECTION_OPTIONS": _connection_options(ldap, values),
        "AUTH_LDAP_BIND_DN": values["bind_dn"],
        "AUTH_LDAP_BIND_PASSWORD": values["bind_password"],
        "AUTH_LDAP_USER_SEARCH": config.LDAPSearch(
            values["user_base"], ldap.SCOPE_SUBTREE, values["user_filter"]),
        "AUTH_LDAP_GROUP_SEARCH": config.LDAPSearch(values["group_base"], ldap.SCOPE_SUBTREE),
        "AUTH_LDAP_GROUP_TYPE": getattr(config, _GROUP_TYPES[values["group_type"]])(),
        "AUTH_LDAP_USER_ATTR_MAP": {"first_name": "givenName", "last_name": "sn",
                                    "email": "mail"},
        "AUTH_LDAP_ROLE_GROUPS": role_groups(ldap, values["role_groups"]),
        "AUTH_LDAP_DISABLED_GROUP": values["disabled_group"] or None,
        "AUTH_LDAP_PARTNER_ATTRIBUTE": values["partner_attribute"] or None,
        "AUTH_LDAP_HOME_ATTRIBUTE": values["home_attribute"] or None,
        # Read by accounts.directory_refresh, not by django-auth-ldap.
        "AUTH_LDAP_RECHECK_SECONDS": values["recheck"],
    }


def _validate(ldap: Any, values: dict[str, Any]) -> None:
    """Refuse a directory configuration that is incomplete or malformed."""
    required = {"MFT_LDAP_USER_SEARCH_BASE": values["user_base"],
                "MFT_LDAP_GROUP_SEARCH_BASE": values["group_base"],
                "MFT_LDAP_ROLE_GROUPS": values["role_groups"]}
    for variable, value in required.items():
        if not value:
            raise ImproperlyConfigured(f"{variable} is required when MFT_LDAP_URI is set")
    if values["group_type"] not in _GROUP_TYPES:
        raise ImproperlyConfigured(f"MFT_LDAP_GROUP_TYPE={values['group_type']!r} must be one "
                                   f"of {', '.join(_GROUP_TYPES)}")
    if "%(user)s" not in values["user_filter"]:
        raise ImproperlyConfigured("MFT_LDAP_USER_FILTER must contain %(user)s")
    for dn in (values["user_base"], values["group_base"], values["disabled_group"]):
        _check_dn(ldap, dn)
    if values["ca_file"] and not Path(values["ca_file"]).is_file():
        raise ImproperlyConfigured(f"MFT_LDAP_CA_FILE={values['ca_file']!r} is not a file")


def _checked_uris(uris: list[str]) -> list[str]:
    """Refuse anything but ldap:// and ldaps:// URIs with a host."""
    for uri in uris:
        parts = urlsplit(uri)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise ImproperlyConfigured(f"MFT_LDAP_URI: {uri!r} is not an ldap:// or ldaps:// URI")
    return uris


def _check_dn(ldap: Any, dn: str) -> None:
    """Refuse a malformed distinguished name."""
    if dn and not ldap.dn.is_dn(dn):
        raise ImproperlyConfigured(f"{dn!r} is not a distinguished name")


def role_groups(ldap: Any, raw: str) -> list[tuple[str, str]]:
    """Parse `role=group DN;…` into (role, DN) pairs, in the order given (first match wins)."""
    pairs = []
    for item in (part.strip() for part in raw.split(";")):
        if not item:
            continue
        role, _, dn = item.partition("=")
        role, dn = role.strip(), dn.strip()
        if role not in ROLES:
            raise ImproperlyConfigured(
                f"MFT_LDAP_ROLE_GROUPS: {role!r} is not a role ({', '.join(ROLES)})")
        _check_dn(ldap, dn)
        if not dn:
            raise ImproperlyConfigured(f"MFT_LDAP_ROLE_GROUPS: no group DN for {role!r}")
        pairs.append((role, dn))
    if not pairs:
        raise ImproperlyConfigured("MFT_LDAP_ROLE_GROUPS names no group")
    return pairs


def _connection_options(ldap: Any, values: dict[str, Any]) -> dict[int, Any]:
    """Return python-ldap options: timeouts, no referrals, and TLS verified by default."""
    options: dict[int, Any] = {
        ldap.OPT_NETWORK_TIMEOUT: values["timeout"],
        ldap.OPT_TIMEOUT: values["timeout"],
        ldap.OPT_REFERRALS: 0,
        ldap.OPT_X_TLS_REQUIRE_CERT:
            ldap.OPT_X_TLS_DEMAND if values["verify"] else ldap.OPT_X_TLS_NEVER,
    }
    if values["ca_file"]:
        options[ldap.OPT_X_TLS_CACERTFILE] = values["ca_file"]
    # libldap applies TLS options only to a new context, which must be made last.
    options[ldap.OPT_X_TLS_NEWCTX] = 0
    return options
