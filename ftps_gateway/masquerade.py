"""The address a PASV reply announces, chosen by the client's network.

Behind NAT, internal clients must be told the internal address and internet clients the
public one (`MFT_MASQUERADE_MAP=10.0.0.0/8=10.1.2.3;0.0.0.0/0=203.0.113.5`). The most
specific network that holds the client wins; with none, `MFT_MASQUERADE_ADDRESS` (or the
listener's own address). EPSV replies carry no address and are unaffected.
"""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MasqueradeMap = tuple[tuple[Network, str], ...]


def parse_map(raw: str) -> MasqueradeMap:
    """Return `network=address;…` as (network, address) pairs, most specific first."""
    pairs: list[tuple[Network, str]] = []
    for item in (part.strip() for part in raw.replace(",", ";").split(";")):
        if not item:
            continue
        network_text, sep, address = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not network=address")
        network = ipaddress.ip_network(network_text.strip(), strict=False)
        announced = ipaddress.ip_address(address.strip())
        if not isinstance(announced, ipaddress.IPv4Address):
            raise ValueError(f"{address.strip()!r}: a PASV reply can only carry IPv4")
        pairs.append((network, str(announced)))
    pairs.sort(key=lambda pair: pair[0].prefixlen, reverse=True)
    return tuple(pairs)


def address_for(client: str, networks: MasqueradeMap, default: str | None) -> str | None:
    """Return the address to announce to a client, or the default when no network fits."""
    if not networks or not client:
        return default
    try:
        ip = ipaddress.ip_address(client.removeprefix("::ffff:"))
    except ValueError:
        return default
    for network, address in networks:
        if ip.version == network.version and ip in network:
            return address
    return default
