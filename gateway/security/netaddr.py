"""Address classification for the policy rules: loopback, link-local, private, public, wildcard.

``0.0.0.0`` and ``::`` mean "every interface", so what they expose depends on the host: ``HostInfo`` reads
the host's interfaces once (through ``ifaddr``, which zeroconf already brings) and the rules ask it.
Host *names* are never resolved here: a pure check must not depend on DNS, so a name other than
``localhost`` counts as a remote peer (the conservative answer).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum

import ifaddr


class AddressClass(StrEnum):
    LOOPBACK = "loopback"
    LINK_LOCAL = "link-local"
    PRIVATE = "private"
    PUBLIC = "public"
    WILDCARD = "all interfaces"
    NAME = "host name"


# RFC 6598 shared address space (carrier-grade NAT) is not globally routable: treat it as private.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_ULA = ipaddress.ip_network("fc00::/7")


def classify(address: str) -> AddressClass:
    text = address.strip("[]")
    if text.lower() in {"localhost", "localhost.localdomain", "ip6-localhost"}:
        return AddressClass.LOOPBACK
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return AddressClass.NAME
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return AddressClass.WILDCARD
    if ip.is_loopback:
        return AddressClass.LOOPBACK
    if ip.is_link_local:
        return AddressClass.LINK_LOCAL
    if ip in _CGNAT or (isinstance(ip, ipaddress.IPv6Address) and ip in _ULA) or ip.is_private:
        return AddressClass.PRIVATE
    return AddressClass.PUBLIC


def is_loopback(address: str) -> bool:
    return classify(address) is AddressClass.LOOPBACK


def is_wildcard(address: str) -> bool:
    return classify(address) is AddressClass.WILDCARD


@dataclass(frozen=True, slots=True)
class HostInfo:
    """The host's own addresses, by interface name."""

    addresses: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def read(cls) -> HostInfo:
        found: dict[str, list[str]] = {}
        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                addr = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
                found.setdefault(adapter.nice_name, []).append(addr)
        return cls({name: tuple(addrs) for name, addrs in found.items()})

    def all_addresses(self) -> list[str]:
        return [a for addrs in self.addresses.values() for a in addrs]

    def public_addresses(self) -> list[str]:
        return [a for a in self.all_addresses() if classify(a) is AddressClass.PUBLIC]

    def reach(self, bind: str) -> AddressClass:
        """What a listener bound to ``bind`` is reachable from, at worst."""
        cls_ = classify(bind)
        if cls_ is not AddressClass.WILDCARD:
            return cls_
        classes = {classify(a) for a in self.all_addresses()}
        for worst in (AddressClass.PUBLIC, AddressClass.PRIVATE, AddressClass.LINK_LOCAL):
            if worst in classes:
                return worst
        return AddressClass.LOOPBACK

    def interface_addresses(self, interface: str | None) -> list[str]:
        if interface is None:
            return self.all_addresses()
        if interface in self.addresses:
            return list(self.addresses[interface])
        return [interface]  # an address given instead of a name
