"""System checks for the gateway's configuration (ids ftps_gateway.E0xx / W0xx)."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from ftps_gateway import masquerade, proxy_protocol


@register("gateway")
def check_tls_files(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report an unreadable certificate or key (a missing default pair is generated later)."""
    problems: list[CheckMessage] = []
    explicit = bool(os.environ.get("MFT_TLS_CERT") or os.environ.get("MFT_TLS_KEY"))
    for label, path, check_id in (
        ("certificate", settings.TLS_CERT_FILE, "ftps_gateway.E001"),
        ("private key", settings.TLS_KEY_FILE, "ftps_gateway.E002"),
    ):
        if not path.exists() and not explicit:
            continue
        if not os.access(path, os.R_OK):
            problems.append(Error(f"TLS {label} {path} is missing or unreadable",
                                  hint="set MFT_TLS_CERT/MFT_TLS_KEY to a readable PEM pair",
                                  id=check_id))
    return problems


@register("gateway")
def check_ports(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report listeners that are all off, and a passive range narrower than the session cap."""
    problems: list[CheckMessage] = []
    if settings.FTPS_PORT is None and settings.FTPS_IMPLICIT_PORT is None:
        problems.append(Warning("both FTPS listeners are off; the gateway will not serve",
                                id="ftps_gateway.W001"))
    low, high = settings.PASSIVE_PORTS
    if high - low + 1 < min(settings.GATEWAY_MAX_CONNECTIONS, 50):
        problems.append(Warning(
            f"passive range {low}-{high} is narrower than the expected concurrency",
            hint="widen MFT_PASSIVE_PORTS", id="ftps_gateway.W002"))
    if settings.TLS_MIN_VERSION not in ("TLSv1.2", "TLSv1.3"):
        problems.append(Error(f"MFT_TLS_MIN_VERSION={settings.TLS_MIN_VERSION!r} must be "
                              "TLSv1.2 or TLSv1.3", id="ftps_gateway.E003"))
    return problems


@register("gateway")
def check_proxy_and_masquerade(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report a junk PROXY protocol mode, trusted network or masquerade map."""
    problems: list[CheckMessage] = []
    try:
        policy = proxy_protocol.ProxyPolicy.build(settings.PROXY_PROTOCOL,
                                                  settings.PROXY_TRUSTED)
    except ValueError as exc:
        problems.append(Error(f"MFT_PROXY_PROTOCOL/MFT_PROXY_TRUSTED: {exc}",
                              hint="a mode off, v1, v2 or any; trusted balancers as CIDRs",
                              id="ftps_gateway.E004"))
    else:
        if policy.enabled and not policy.trusted:
            problems.append(Warning("MFT_PROXY_PROTOCOL is on but MFT_PROXY_TRUSTED is empty: "
                                    "every header will be refused", id="ftps_gateway.W003"))
    try:
        masquerade.parse_map(settings.MASQUERADE_MAP)
    except ValueError as exc:
        problems.append(Error(f"MFT_MASQUERADE_MAP: {exc}",
                              hint="network=address pairs separated by ';'",
                              id="ftps_gateway.E005"))
    return problems
