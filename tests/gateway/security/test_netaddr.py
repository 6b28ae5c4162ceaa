from __future__ import annotations

import pytest

from gateway.security.netaddr import AddressClass, HostInfo, classify


@pytest.mark.parametrize(("addr", "expected"), [
    ("127.0.0.1", AddressClass.LOOPBACK), ("127.8.9.10", AddressClass.LOOPBACK), ("::1", AddressClass.LOOPBACK),
    ("localhost", AddressClass.LOOPBACK), ("169.254.1.2", AddressClass.LINK_LOCAL),
    ("fe80::1%eth0", AddressClass.LINK_LOCAL), ("192.168.1.5", AddressClass.PRIVATE),
    ("10.1.2.3", AddressClass.PRIVATE), ("172.16.0.1", AddressClass.PRIVATE), ("100.64.1.1", AddressClass.PRIVATE),
    ("fd12::1", AddressClass.PRIVATE), ("8.8.8.8", AddressClass.PUBLIC), ("2001:4860::1", AddressClass.PUBLIC),
    ("0.0.0.0", AddressClass.WILDCARD), ("::", AddressClass.WILDCARD), ("broker.lan", AddressClass.NAME),
    ("::ffff:192.168.1.1", AddressClass.PRIVATE),
])
def test_classify(addr: str, expected: AddressClass) -> None:
    assert classify(addr) is expected


def test_wildcard_reach_depends_on_the_host() -> None:
    assert HostInfo({"lo": ("127.0.0.1",)}).reach("0.0.0.0") is AddressClass.LOOPBACK
    assert HostInfo({"lo": ("127.0.0.1",), "e": ("10.0.0.2",)}).reach("::") is AddressClass.PRIVATE
    assert HostInfo({"e": ("10.0.0.2",), "w": ("81.2.69.161",)}).reach("0.0.0.0") is AddressClass.PUBLIC
    assert HostInfo({}).reach("192.168.0.1") is AddressClass.PRIVATE


def test_reads_this_hosts_interfaces() -> None:
    host = HostInfo.read()
    assert any(classify(a) is AddressClass.LOOPBACK for a in host.all_addresses())
