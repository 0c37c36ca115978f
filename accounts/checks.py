"""System checks for directory logins (ids accounts.W0xx)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register


@register()
def check_directory_tls(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when directory passwords would cross the network in clear or unverified."""
    uri = getattr(settings, "AUTH_LDAP_SERVER_URI", "")
    if not uri:
        return []
    import ldap

    problems: list[CheckMessage] = []
    clear = [u for u in uri.split() if u.startswith("ldap://")]
    if clear and not getattr(settings, "AUTH_LDAP_START_TLS", False):
        problems.append(Warning(
            f"directory passwords are sent in clear to {', '.join(clear)}",
            hint="use ldaps:// or set MFT_LDAP_START_TLS=on", id="accounts.W001"))
    options = getattr(settings, "AUTH_LDAP_CONNECTION_OPTIONS", {})
    if options.get(ldap.OPT_X_TLS_REQUIRE_CERT) == ldap.OPT_X_TLS_NEVER:
        problems.append(Warning(
            "the directory's TLS certificate is not verified (MFT_LDAP_TLS_VERIFY=off)",
            hint="set MFT_LDAP_CA_FILE to the directory's CA instead", id="accounts.W002"))
    return problems
