"""What a plugin opens, declared before anything opens.

Every plugin's pure ``exposures(config)`` returns these records; the policy layer checks them all together
and ``ampgate ports`` prints them as a firewall plan. An exposure that a plugin opens without declaring it
is a bug: tests compare the declared listeners with the sockets actually bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Transport(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    SERIAL = "serial"


class Auth(StrEnum):
    """How the peer proves who it is."""

    NONE = "none"
    PASSWORD = "password"  # noqa: S105  # a kind of authentication, not a password
    TOKEN = "token"  # noqa: S105  # likewise: bearer tokens
    CLIENT_CERT = "client_cert"  # mutual TLS
    PINNED_KEY = "pinned_key"  # a pinned public key (EEBUS SKI)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSpec:
    """The TLS a link uses, as configured (policy checks it; ``security.tls`` builds it)."""

    enabled: bool = True
    min_version: str = "1.2"
    ciphers: str | None = None
    verify: bool = True  # outbound: peer certificate verified
    check_hostname: bool = True  # outbound: host name checked
    client_auth: str = "none"  # inbound: none / optional / required
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    self_signed: bool = False  # inbound: serving the certificate generated at first start

    @classmethod
    def from_config(cls, block: dict[str, object] | None, *, self_signed: bool = False) -> TlsSpec | None:
        """From a validated ``tls:`` block; ``None`` when TLS is absent or disabled."""
        if not block or not block.get("enabled", True):
            return None
        return cls(
            min_version=str(block.get("min_version", "1.2")),
            ciphers=block.get("ciphers"),  # type: ignore[arg-type]
            verify=bool(block.get("verify", True)),
            check_hostname=bool(block.get("check_hostname", True)),
            client_auth=str(block.get("client_auth", "none")),
            cert=block.get("cert"),  # type: ignore[arg-type]
            key=block.get("key"),  # type: ignore[arg-type]
            ca=block.get("ca"),  # type: ignore[arg-type]
            self_signed=self_signed or not block.get("cert"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    """A port we open for others to connect to."""

    plugin: str
    protocol: str  # "ocpp", "modbus", "https", ...
    bind: str  # an IP literal; 0.0.0.0 / :: mean every interface
    port: int
    transport: Transport = Transport.TCP
    tls: TlsSpec | None = None
    auth: Auth = Auth.NONE
    allowlist: tuple[str, ...] = ()  # source networks admitted (empty: anyone)
    writes: bool = False  # accepts commands that change something
    config_path: tuple[str | int, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbound:
    """A connection we make to someone else."""

    plugin: str
    protocol: str
    host: str
    port: int | None
    transport: Transport = Transport.TCP
    tls: TlsSpec | None = None
    auth: Auth = Auth.NONE
    sends_credentials: bool = False  # a password or token travels on this link
    writes: bool = False  # we accept commands arriving over it
    config_path: tuple[str | int, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Announcement:
    """A multicast announcement or listener (SSDP, mDNS)."""

    plugin: str
    protocol: str  # "mdns", "ssdp"
    interface: str | None  # an interface name or address; None means all
    group: str  # multicast group
    port: int
    config_path: tuple[str | int, ...] = ()
    description: str = ""


Exposure = Listener | Outbound | Announcement
