"""The client's address for a web request, honouring only trusted reverse proxies.

Bans, allow-lists and the audit log need the real client, but X-Forwarded-For is forged
by anyone unless it was added by a proxy we trust (MFT_TRUSTED_PROXIES).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings


def _trusted(address: str) -> bool:
    """Return True when the address belongs to a configured trusted proxy network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False)
               for net in settings.TRUSTED_PROXIES)


def client_ip(request: Any) -> str | None:
    """Return the client address: the peer, or the last untrusted hop it forwarded."""
    peer = request.META.get("REMOTE_ADDR") or None
    if peer is None or not settings.TRUSTED_PROXIES or not _trusted(peer):
        return peer
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer
