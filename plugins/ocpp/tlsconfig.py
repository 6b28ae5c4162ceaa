"""The listener's TLS, as declared to the policy and as built: one derivation for both.

Contract:
- ``listener_tls(config)`` is the ``TlsSpec`` that ``exposures()`` declares; ``server_tls(...)`` builds the
  matching ``ssl.SSLContext`` through ``gateway.security.tls`` (the only place contexts are built), so what
  ``ampgate check`` judged is what runs.
- Client certificates: ``optional`` (verified against the station CA when sent) on every TLS listener, so
  profile-3 stations and approved ones can present theirs while profile-2 stations need none; ``required``
  when every configured station is profile 3. A configured ``client_auth`` only ever raises this.
- Ciphers: ``tls.DEFAULT_CIPHERS`` (ECDHE + AEAD; TLS 1.3 suites always on), plus ``tls.RSA_KX_CIPHERS``
  when a station has ``ciphers_rsa: true`` (OCPP 1.6 whitepaper / 2.0.1 A00.FR.317 list them; no forward
  secrecy, so TLS-002 refuses them unless accepted and OCPP-010 names the station). RSA key exchange needs
  an RSA server certificate: with ``ciphers_rsa`` the configured ``tls.cert`` must hold an RSA key.
- Without ``tls.cert`` the gateway's own certificate (``certs.ensure_gateway_certs``: local CA, server
  certificate with full chain) is served and the local CA verifies client certificates, the CA that
  ``ampgate certs client <station-id>`` issues from.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from gateway.security.exposure import TlsSpec
from gateway.security.netaddr import is_wildcard
from plugins.ocpp.stations import StationConfig

_ORDER: Final = ("none", "optional", "required")


def client_auth(config: dict[str, Any]) -> str:
    block = config.get("tls") or {}
    profiles = {int(s.get("profile", 2)) for s in config.get("stations", [])}
    needed = "required" if profiles == {3} else "optional"
    configured = str(block.get("client_auth", "none"))
    return max(needed, configured, key=_ORDER.index) if configured in _ORDER else needed


def ciphers(config: dict[str, Any]) -> str | None:
    from gateway.security.tls import DEFAULT_CIPHERS, RSA_KX_CIPHERS

    block = config.get("tls") or {}
    base = block.get("ciphers")
    if any(s.get("ciphers_rsa") for s in config.get("stations", [])):
        return f"{base or DEFAULT_CIPHERS}:{RSA_KX_CIPHERS}"
    return str(base) if base else None


def listener_tls(config: dict[str, Any]) -> TlsSpec | None:
    block = dict(config.get("tls") or {})
    if not block.get("enabled", True):
        return None
    block["client_auth"] = client_auth(config)
    block["ciphers"] = ciphers(config)
    return TlsSpec.from_config(block)


def _path(base: Path, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def server_tls(config: dict[str, Any], data_dir: Path, stations: Iterable[StationConfig],
               base_dir: Path | None = None) -> ssl.SSLContext | None:
    """The listener's context, or None for a plain (loopback, profile 1) listener."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from gateway.security import certs, tls

    block = config.get("tls") or {}
    if not block.get("enabled", True):
        return None
    base = base_dir or Path.cwd()
    gateway_certs = None
    if block.get("cert"):
        if not block.get("key"):
            raise tls.TlsConfigError("ocpp.tls.cert is set without ocpp.tls.key")
        cert, key = _path(base, block["cert"]), _path(base, block["key"])
    else:
        bind = str(config.get("bind", "127.0.0.1"))
        gateway_certs = certs.ensure_gateway_certs(data_dir, hosts=[] if is_wildcard(bind) else [bind])
        cert, key = gateway_certs.cert, gateway_certs.key
    mode = client_auth(config)
    ca: Path | None = _path(base, block["ca"]) if block.get("ca") else None
    if ca is None and mode != "none":
        ca = (gateway_certs or certs.ensure_gateway_certs(data_dir)).ca_cert
    if any(s.ciphers_rsa for s in stations):
        leaf = certs.load_certs(cert)[0]
        if not isinstance(leaf.public_key(), rsa.RSAPublicKey):
            raise tls.TlsConfigError("ciphers_rsa (RSA key exchange) needs an RSA server certificate: set "
                                     "ocpp.tls.cert and ocpp.tls.key to an RSA certificate and key")
    return tls.server_context(cert=cert, key=key, ca=ca, client_auth=mode,
                              min_version=str(block.get("min_version", "1.2")), ciphers=ciphers(config))
