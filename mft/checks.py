"""System checks for platform configuration (ids mft.E0xx / mft.W0xx)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register


@register()
def check_scanning(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report an invalid scan mode, oversize policy or clamd address."""
    from transfers.scanning import parse_clamd_address

    problems: list[CheckMessage] = []
    if settings.SCAN_MODE not in ("on", "off"):
        problems.append(Error(f"MFT_SCAN={settings.SCAN_MODE!r} must be on or off",
                              id="mft.E001"))
    elif settings.SCAN_MODE == "off":
        problems.append(Warning("virus scanning is switched off (MFT_SCAN=off)",
                                hint="a compliance finding; set MFT_CLAMD instead",
                                id="mft.W001"))
    if settings.SCAN_OVERSIZE_POLICY not in ("hold", "reject"):
        problems.append(Error(f"MFT_SCAN_OVERSIZE={settings.SCAN_OVERSIZE_POLICY!r} must be "
                              "hold or reject", id="mft.E002"))
    if settings.CLAMD_ADDRESS:
        try:
            parse_clamd_address(settings.CLAMD_ADDRESS)
        except ValueError as exc:
            problems.append(Error(f"MFT_CLAMD is invalid: {exc}",
                                  hint="use tcp://host:port or unix:///path", id="mft.E003"))
    return problems


@register()
def check_master_key(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report a master key that is not 32 bytes of base64."""
    if not settings.MASTER_KEY:
        return []
    try:
        raw = base64.b64decode(settings.MASTER_KEY, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        return [Error("MFT_MASTER_KEY must be 32 bytes, base64-encoded",
                      hint="generate one with: openssl rand -base64 32", id="mft.E004")]
    return []


@register()
def check_listener_ports(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report two listeners on one port (an error), or one inside the passive range.

    The admin listener on the web port would put the dashboard on the partner-facing
    address (mft.admin_listener tells them apart by port). A listener inside the passive
    range only narrows it (the gateway skips a port it cannot bind): a warning.
    """
    ports = {"MFT_WEB_PORT": settings.WEB_PORT, "MFT_ADMIN_PORT": settings.ADMIN_PORT,
             "MFT_FTPS_PORT": settings.FTPS_PORT,
             "MFT_FTPS_IMPLICIT_PORT": settings.FTPS_IMPLICIT_PORT}
    problems: list[CheckMessage] = []
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port is None or port == 0:  # off, or any free port (tests)
            continue
        if port in seen:
            problems.append(Error(f"{name} and {seen[port]} are both {port}",
                                  hint="give every listener a port of its own", id="mft.E005"))
        seen.setdefault(port, name)
    low, high = settings.PASSIVE_PORTS
    for port, name in seen.items():
        if low <= port <= high:
            problems.append(Warning(f"{name}={port} is inside MFT_PASSIVE_PORTS {low}-{high}",
                                    hint="move the passive range off the listeners' ports",
                                    id="mft.W005"))
    return problems
