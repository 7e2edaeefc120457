"""Which address a request comes from: the peer, or what trusted proxies say in X-Forwarded-For."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def trusted_networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(remote_addr: str | None, forwarded_for: str | None, trusted_proxies: tuple[str, ...]) -> str:
    """The peer's address unless the peer is a trusted proxy; then the nearest address in
    X-Forwarded-For that is not a trusted proxy, read from the right (entries further left were
    written by the client and can be anything). An entry that is not an address stops the walk
    at the last proxy that vouched for it."""
    peer = (remote_addr or "").strip()
    networks = trusted_networks(trusted_proxies)
    if not forwarded_for or not _trusted(peer, networks):
        return peer
    current = peer
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return current
        current = hop
        if not _trusted(hop, networks):
            return hop
    return current
