"""Is a webhook URL safe to call? Pure rules, and the resolution they are applied to.

A webhook URL is the company's input, and billing calls it from inside the
network: pointed at a loopback, private, link-local (cloud metadata) or other
internal address, it would make billing a way in. So a URL must be http(s),
and every address its host resolves to must be public. The check runs when the
URL is set and again before every delivery, and the delivery connects to an
address that passed it (a name that resolves elsewhere the second time, DNS
rebinding, gains nothing). Hosts in `WEBHOOK_ALLOWED_HOSTS` skip the address
check: local development and tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to (a parameter, so tests resolve nothing).
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL_LENGTH = 2000
# Cloud metadata services, named for a clear message (both are also link-local/private).
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
}


class UnsafeWebhookUrl(ValueError):
    """The URL is not one billing may call; the message says why."""


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL: where billing would connect."""

    url: str
    scheme: str
    host: str
    port: int


@dataclass(frozen=True)
class Vetted:
    """A target that passed, and the address to connect to (None: an allowed host, by name)."""

    target: Target
    address: str | None


def parse_allowed_hosts(value: str) -> frozenset[str]:
    """`WEBHOOK_ALLOWED_HOSTS`: comma-separated host names or addresses."""
    return frozenset(_normal_host(host) for host in value.split(",") if host.strip())


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".").strip("[]")


def parse_target(url: str) -> Target:
    """The scheme, host and port of a webhook URL; `UnsafeWebhookUrl` if it cannot be one."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeWebhookUrl(f"longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise UnsafeWebhookUrl("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeWebhookUrl(f"not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeWebhookUrl(f"scheme must be http or https, not {scheme or 'none'!r}")
    if parts.username is not None or parts.password is not None:
        raise UnsafeWebhookUrl("must not carry credentials")
    host = _normal_host(parts.hostname or "")
    if not host:
        raise UnsafeWebhookUrl("has no host")
    return Target(url, scheme, host, port or (443 if scheme == "https" else 80))


def address_refusal(address: str) -> str | None:
    """Why billing must not connect to `address`, or None when it is a public address."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            inner = address_refusal(str(mapped))
            if inner is not None:
                return f"{ip} embeds {mapped}: {inner}"
    checks: list[tuple[bool, str]] = [
        (ip in METADATA_ADDRESSES, "a cloud metadata address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "not a public address"),
    ]
    for refused, why in checks:
        if refused:
            return f"{ip} is {why}"
    return None


def vet_addresses(target: Target, addresses: Iterable[str]) -> Vetted:
    """Every address must be public (an attacker may answer with one good, one bad)."""
    resolved = list(dict.fromkeys(addresses))
    if not resolved:
        raise UnsafeWebhookUrl(f"host {target.host!r} does not resolve")
    for address in resolved:
        refusal = address_refusal(address)
        if refusal is not None:
            raise UnsafeWebhookUrl(f"host {target.host!r} resolves to {refusal}")
    return Vetted(target, resolved[0])


async def resolve(host: str, port: int) -> list[str]:
    """The addresses a host resolves to (an address literal resolves to itself)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [str(info[4][0]) for info in infos]


async def vet_url(url: str, allowed_hosts: frozenset[str], resolver: Resolver = resolve) -> Vetted:
    """Parse, then resolve and check every address, unless the host is allowed."""
    target = parse_target(url)
    if target.host in allowed_hosts:
        return Vetted(target, None)
    return vet_addresses(target, await resolver(target.host, target.port))
