"""Address allow-lists as users and tokens store them: validated, normalized networks."""

from __future__ import annotations

import ipaddress

from mft.errors import InvalidInput

MAX_NETWORKS = 100


def normalize_networks(values: list[str]) -> list[str]:
    """Return the networks (`10.0.0.0/8`, `2001:db8::/32`, single addresses) normalized,
    refusing anything that is not one."""
    if len(values) > MAX_NETWORKS:
        raise InvalidInput(f"at most {MAX_NETWORKS} networks")
    networks = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(str(value).strip(), strict=False)))
        except ValueError:
            raise InvalidInput(f"{str(value)[:60]!r} is not an IP address or network") from None
    return sorted(set(networks), key=networks.index)
