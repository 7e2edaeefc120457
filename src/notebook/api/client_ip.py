"""Which address a request comes from: the peer, or what trusted proxies say in X-Forwarded-For;
and which scheme the client used: the connection's, or X-Forwarded-Proto from a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

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


def forwarded_scheme(
    remote_addr: str | None, forwarded_proto: str | None, trusted_proxies: tuple[str, ...]
) -> str | None:
    """The scheme a trusted proxy says the client used ("http" or "https"), or None: the peer
    is not a trusted proxy, or said nothing usable (anyone else may send the header)."""
    if not forwarded_proto or not _trusted((remote_addr or ""), trusted_networks(trusted_proxies)):
        return None
    # a chain of proxies appends: the last entry is the one our own proxy wrote
    scheme = forwarded_proto.split(",")[-1].strip().lower()
    return scheme if scheme in ("http", "https") else None


class ForwardedProto:
    """WSGI middleware: the request's scheme is X-Forwarded-Proto when a trusted proxy (TRUSTED_PROXIES)
    sent it, so `request.is_secure` means "the client's hop was HTTPS"; from anyone else the
    header is ignored."""

    def __init__(self, app: Any, trusted_proxies: tuple[str, ...]) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        scheme = forwarded_scheme(
            environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_PROTO"), self.trusted_proxies
        )
        if scheme is not None:
            environ["wsgi.url_scheme"] = scheme
        return self.app(environ, start_response)
