"""The SSRF guard: a webhook may only reach public addresses, over https.

The host is resolved and *every* address it resolves to must be public: a name with one
public and one private address is refused, since either could be the one connected to.
The check runs at registration and again before each attempt (DNS can change), and the
attempt then connects to an address that was just checked, never resolving the name
again, so a rebinding DNS server cannot swap in a private address in between.

`REBOUND_WEBHOOK_ALLOW_PRIVATE_TARGETS=true` lifts the address rule and allows `http`,
for receivers on a developer's machine or in tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


class UnsafeTarget(ValueError):
    """The URL may not be called; the message says why, for the subscription's owner."""


def non_public_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address, or None when it is one."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address are judged by that address.
        if address.ipv4_mapped is not None:
            return non_public_reason(address.ipv4_mapped)
        if address.sixtofour is not None:
            return non_public_reason(address.sixtofour)
        if address.teredo is not None:
            return non_public_reason(address.teredo[1])
        if address in _NAT64:
            return non_public_reason(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address in _NAT64_LOCAL:
            return "a local NAT64 address"
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "a CGNAT address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a globally routable address"),
    )
    for failed, reason in checks:
        if failed:
            return reason
    return None


def resolve_addresses(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget(f"the host {host} does not resolve") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        # Drop an IPv6 zone ("fe80::1%eth0"); the address alone decides.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeTarget(f"the host {host} does not resolve")
    return addresses


@dataclass(frozen=True)
class Target:
    """A checked URL and the addresses it may be reached at."""

    url: httpx.URL
    addresses: list[IPAddress]

    @property
    def hostname(self) -> str:
        return self.url.host

    @property
    def host_header(self) -> str:
        """What `Host` says: the name (and a non-default port) the URL gave."""
        return self.url.netloc.decode("ascii").rpartition("@")[2]

    def url_for(self, address: IPAddress) -> httpx.URL:
        """The same URL, aimed at one checked address instead of the name."""
        return self.url.copy_with(host=str(address))


def parse_url(url: str, *, allow_private: bool) -> httpx.URL:
    """The URL, if its scheme and shape may be used for webhooks."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeTarget(f"the URL is not valid: {exc}") from exc
    allowed = ("https", "http") if allow_private else ("https",)
    if parsed.scheme not in allowed:
        raise UnsafeTarget("the URL must use https")
    if not parsed.host:
        raise UnsafeTarget("the URL has no host")
    return parsed


def check_target(url: str, *, allow_private: bool) -> Target:
    """Resolve and check `url` (blocking: for the request threads)."""
    parsed = parse_url(url, allow_private=allow_private)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = resolve_addresses(parsed.host, port)
    if not allow_private:
        for address in addresses:
            reason = non_public_reason(address)
            if reason is not None:
                raise UnsafeTarget(f"{parsed.host} resolves to {address}, {reason}")
    return Target(url=parsed, addresses=addresses)


async def check_target_async(url: str, *, allow_private: bool) -> Target:
    """`check_target` without blocking the worker's event loop."""
    return await asyncio.to_thread(check_target, url, allow_private=allow_private)
