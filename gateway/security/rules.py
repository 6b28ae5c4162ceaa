"""The core rule catalogue: every rule of ``shared/design/POLICY.md`` not tied to one protocol.

Each check is pure over ``PolicyInput`` (config, exposures, host interfaces, today) and yields findings;
protocol rules live in their plugins' ``rules()`` and run through the same engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.config.yaml_loader import NodeDict, NodeList, SecretStr
from gateway.security.exposure import Auth, Listener, Outbound, TlsSpec
from gateway.security.netaddr import AddressClass, classify, is_loopback, is_wildcard
from gateway.security.policy import Finding, PolicyInput, Rule, Severity, rule_factory

CORE = "gateway"

# Config keys whose values are secrets. Matched on the last path component.
SECRET_KEY = re.compile(r"(?i)^(password|passwd|secret|.*_secret|token|.*_token|api_key|psk|pin|.*_pin|"
                        r"private_key_password|key_password)$")
PIN_KEY = re.compile(r"(?i)^(pin|.*_pin)$")

# AUTH-002: below this a password is refused outright; between it and LONG_PASSWORD the full character
# class policy applies; from LONG_PASSWORD on, length alone is strength enough (random broker or station
# secrets are often long hex or base64 strings without special characters).
MIN_PASSWORD = 8
LONG_PASSWORD = 16
CERT_WARN_DAYS = 30


def _plugin_of(path: tuple[str | int, ...]) -> str:
    return str(path[0]) if path else CORE


def walk_secrets(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every (path, value) in the loaded config whose key names a secret."""
    if isinstance(node, NodeDict):
        for key, value in node.items():
            if SECRET_KEY.match(key) and isinstance(value, str | int) and not isinstance(value, bool):
                yield (*path, key), value
            else:
                yield from walk_secrets(value, (*path, key))
    elif isinstance(node, NodeList):
        for index, item in enumerate(node):
            yield from walk_secrets(item, (*path, index))


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path)


def _resolve(data: PolicyInput, file: str) -> Path:
    path = Path(file)
    return path if path.is_absolute() else data.config.path.parent / path


# -- NET ----------------------------------------------------------------------------------------------


def check_public_listener(data: PolicyInput) -> Iterator[Finding]:
    public = data.host.public_addresses()
    for lst in data.listeners():
        cls_ = classify(lst.bind)
        if cls_ is AddressClass.PUBLIC or (cls_ is AddressClass.WILDCARD and public):
            actual = f"{lst.bind}:{lst.port}" + (f" (this host has {', '.join(public)})" if public else "")
            yield Finding(rule_id="NET-001", plugin=lst.plugin, config_path=lst.config_path, actual=actual,
                          message=f"{lst.protocol} listener reachable from a public address",
                          fix="bind it to the LAN interface's private address, or to 127.0.0.1")


def check_wildcard_listener(data: PolicyInput) -> Iterator[Finding]:
    for lst in data.listeners():
        if is_wildcard(lst.bind):
            yield Finding(rule_id="NET-002", plugin=lst.plugin, config_path=lst.config_path,
                          actual=f"{lst.bind}:{lst.port}",
                          message=f"{lst.protocol} listener bound to every interface",
                          fix="set the bind address to the one LAN interface that needs it")


def check_plaintext_writer(data: PolicyInput) -> Iterator[Finding]:
    for lst in data.listeners():
        if lst.writes and lst.tls is None and not lst.allowlist and not is_loopback(lst.bind):
            yield Finding(rule_id="NET-003", plugin=lst.plugin, config_path=lst.config_path,
                          actual=f"{lst.protocol} on {lst.bind}:{lst.port}, plaintext, writes, no allowlist",
                          message="anyone on the segment can send commands",
                          fix="enable TLS, or list the addresses allowed to connect (allow_from)")


def check_unused_plugin(data: PolicyInput) -> Iterator[Finding]:
    exposing = {e.plugin for e in data.exposures}
    for name in data.config.enabled():
        if name in exposing or name in data.silent_plugins or data.dependents.get(name):
            continue
        yield Finding(rule_id="NET-004", plugin=name, config_path=(name, "enabled"), actual="enabled",
                      message=f"{name} is enabled but opens nothing and nothing uses it",
                      fix=f"set {name}.enabled: false, or configure what it should serve")


# -- TLS ----------------------------------------------------------------------------------------------


def _tls_links(data: PolicyInput) -> Iterator[tuple[Listener | Outbound, TlsSpec]]:
    for exp in data.exposures:
        if isinstance(exp, Listener | Outbound) and exp.tls is not None:
            yield exp, exp.tls


def check_verification_off(data: PolicyInput) -> Iterator[Finding]:
    for out in data.outbounds():
        if out.tls is None or is_loopback(out.host):
            continue
        if not out.tls.verify or not out.tls.check_hostname:
            what = "certificate verification" if not out.tls.verify else "host name check"
            yield Finding(rule_id="TLS-001", plugin=out.plugin, config_path=(*out.config_path, "tls"),
                          actual=f"{what} off for {out.host}",
                          message=f"{what} switched off for {out.protocol} to {out.host}",
                          fix="remove verify: false / check_hostname: false and give the peer's CA in tls.ca")


def check_weak_tls(data: PolicyInput) -> Iterator[Finding]:
    from gateway.security.tls import TlsConfigError, weak_ciphers

    for exp, tls in _tls_links(data):
        path = (*exp.config_path, "tls")
        if tls.min_version in {"1.0", "1.1"}:
            yield Finding(rule_id="TLS-002", plugin=exp.plugin, config_path=(*path, "min_version"),
                          actual=f"TLS {tls.min_version}", message="minimum TLS version below 1.2",
                          fix='set tls.min_version: "1.2" (or "1.3")')
        if tls.ciphers:
            try:
                weak = weak_ciphers(tls.ciphers)
            except TlsConfigError as err:
                weak = [str(err)]
            if weak:
                yield Finding(rule_id="TLS-002", plugin=exp.plugin, config_path=(*path, "ciphers"),
                              actual=", ".join(weak[:4]) + (" ..." if len(weak) > 4 else ""),
                              message="cipher list admits suites without AEAD or forward secrecy",
                              fix="remove tls.ciphers to use the secure default (ECDHE with AES-GCM/ChaCha20)")


def check_self_signed(data: PolicyInput) -> Iterator[Finding]:
    for lst in data.listeners():
        if lst.tls is not None and lst.tls.self_signed and not is_loopback(lst.bind):
            yield Finding(rule_id="TLS-003", plugin=lst.plugin, config_path=(*lst.config_path, "tls"),
                          actual="certificate generated at first start",
                          message=f"{lst.protocol} on {lst.bind} serves the gateway's generated certificate",
                          fix="pin the fingerprint printed at start in every client, or configure tls.cert "
                              "and tls.key issued by your CA")


def _key_files(data: PolicyInput) -> Iterator[tuple[str, tuple[str | int, ...], Path]]:
    for exp, tls in _tls_links(data):
        if tls.key:
            yield exp.plugin, (*exp.config_path, "tls", "key"), _resolve(data, tls.key)
    if data.data_dir is not None:
        certs = data.data_dir / "certs"
        if certs.is_dir():
            for key in sorted(certs.glob("*.key")):
                yield CORE, ("gateway", "data_dir"), key


def check_key_permissions(data: PolicyInput) -> Iterator[Finding]:
    from gateway.security.certs import key_file_too_open

    for plugin, path, key in _key_files(data):
        if key.exists() and key_file_too_open(key):
            mode = oct(key.stat().st_mode & 0o777)
            yield Finding(rule_id="TLS-004", plugin=plugin, config_path=path, actual=f"{key} mode {mode}",
                          message="private key readable by group or others",
                          fix=f"chmod 600 {key}")


def check_cert_expiry(data: PolicyInput) -> Iterator[Finding]:
    from gateway.security.certs import days_left

    seen: set[Path] = set()
    for exp, tls in _tls_links(data):
        if not tls.cert:
            continue
        cert = _resolve(data, tls.cert)
        if cert in seen or not cert.exists():
            continue
        seen.add(cert)
        left = days_left(cert)
        if left < CERT_WARN_DAYS:
            expired = left <= 0
            yield Finding(rule_id="TLS-005", plugin=exp.plugin, config_path=(*exp.config_path, "tls", "cert"),
                          actual=f"{cert.name}: {'expired' if expired else f'{left:.0f} days left'}",
                          message="certificate expired" if expired else "certificate expires soon",
                          fix="renew it (ampgate certs renew for the gateway's own)",
                          severity=Severity.REFUSE if expired else None)


# -- AUTH ---------------------------------------------------------------------------------------------


def check_cleartext_credentials(data: PolicyInput) -> Iterator[Finding]:
    for out in data.outbounds():
        if out.sends_credentials and out.tls is None and not is_loopback(out.host):
            yield Finding(rule_id="AUTH-001", plugin=out.plugin, config_path=out.config_path,
                          actual=f"credentials to {out.host} without TLS",
                          message=f"{out.protocol} sends a password or token in clear text",
                          fix="enable tls for this connection")
    for lst in data.listeners():
        if lst.auth in (Auth.PASSWORD, Auth.TOKEN) and lst.tls is None and not is_loopback(lst.bind):
            yield Finding(rule_id="AUTH-001", plugin=lst.plugin, config_path=lst.config_path,
                          actual=f"{lst.auth.value} over plaintext {lst.protocol} on {lst.bind}",
                          message="clients send credentials in clear text",
                          fix="enable tls on this listener")


def check_weak_password(data: PolicyInput) -> Iterator[Finding]:
    from gateway.security.passwords import check_password, is_common

    for path, value in walk_secrets(data.config.raw):
        if PIN_KEY.match(str(path[-1])) or not SECRET_KEY.match(str(path[-1])) or "token" in str(path[-1]):
            continue
        text = str(value)
        problems: list[str] = []
        if is_common(text):
            problems = ["a known default or common password"]
        elif len(text) < MIN_PASSWORD:
            problems = [f"shorter than {MIN_PASSWORD} characters"]
        elif len(text) < LONG_PASSWORD:
            problems = check_password(text)
        if problems:
            yield Finding(rule_id="AUTH-002", plugin=_plugin_of(path), config_path=path,
                          actual="; ".join(problems), message="weak password",
                          fix=f"use a random password of {LONG_PASSWORD}+ characters "
                              "(python -c 'import secrets; print(secrets.token_urlsafe(18))')")


def check_reused_password(data: PolicyInput) -> Iterator[Finding]:
    first: dict[str, tuple[str | int, ...]] = {}
    for path, value in walk_secrets(data.config.raw):
        text = str(value)
        if len(text) < 4 or PIN_KEY.match(str(path[-1])):
            continue
        if text in first:
            yield Finding(rule_id="AUTH-003", plugin=_plugin_of(path), config_path=path,
                          actual=f"same value as {_dotted(first[text])}",
                          message="one secret used in two places",
                          fix="give every station, user and plugin its own secret")
        else:
            first[text] = path


def check_secret_in_clear(data: PolicyInput) -> Iterator[Finding]:
    for path, value in walk_secrets(data.config.raw):
        if not isinstance(value, SecretStr):
            yield Finding(rule_id="AUTH-004", plugin=_plugin_of(path), config_path=path,
                          actual="written in the config file",
                          message=f"secret {_dotted(path)} is written in clear",
                          fix=f"write '{path[-1]}: !secret {_dotted(path).replace('.', '_')}' and put the "
                              "value in secrets.yaml (mode 0600), or use !env_var")


def check_pin(data: PolicyInput) -> Iterator[Finding]:
    from gateway.security.passwords import check_pin as pin_problems

    for path, value in walk_secrets(data.config.raw):
        if not PIN_KEY.match(str(path[-1])):
            continue
        problems = pin_problems(str(value))
        if problems:
            yield Finding(rule_id="AUTH-006", plugin=_plugin_of(path), config_path=path,
                          actual="; ".join(problems), message="weak PIN",
                          fix="use 8 or more random digits without runs or repeats")


# -- LOG, DATA, PLUG ----------------------------------------------------------------------------------


def check_debug_log(data: PolicyInput) -> Iterator[Finding]:
    if data.config.core.get("log_level") == "debug":
        yield Finding(rule_id="LOG-001", plugin=CORE, config_path=("gateway", "log_level"), actual="debug",
                      message="debug logging is on", fix="set gateway.log_level: info once diagnosed")


def check_diagnostics(data: PolicyInput) -> Iterator[Finding]:
    if data.config.core.get("diagnostics"):
        yield Finding(rule_id="DATA-003", plugin=CORE, config_path=("gateway", "diagnostics"), actual="true",
                      message="diagnostics export is enabled",
                      fix="set gateway.diagnostics: false when the support case is closed")


def check_third_party(data: PolicyInput) -> Iterator[Finding]:
    for name, target in sorted(data.blocked_plugins.items()):
        if name in data.config.raw:
            yield Finding(rule_id="PLUG-001", plugin=name, config_path=(name,),
                          actual=f"third-party plugin {name} ({target}) not in gateway.allow_plugins",
                          message="configuration for a third-party plugin that is not allowed",
                          fix=f"add '{name}' to gateway.allow_plugins if you trust its code")


_rule = rule_factory(CORE)


W, R, N, B = Severity.WARN, Severity.REFUSE, Severity.NEVER, Severity.BEHAVIOUR

CORE_RULES: tuple[Rule, ...] = (
    _rule("NET-001", "Listener reachable from a public address", R, "bind to a private LAN address",
          "these products are built for a segmented LAN, never for direct Internet exposure",
          check_public_listener),
    _rule("NET-002", "Listener bound to all interfaces", W, "bind to the one LAN interface it serves",
          "one wrong route exposes it; bind to the interface that needs it", check_wildcard_listener),
    _rule("NET-003", "Plaintext listener accepting writes without allowlist", R,
          "TLS, or a source allowlist", "anyone on the segment can then steer chargers", check_plaintext_writer),
    _rule("NET-004", "Enabled plugin that opens nothing and is used by nothing", W, "disable it",
          "unused services are attack surface; disable them", check_unused_plugin),
    _rule("TLS-001", "Certificate or host-name verification off", N, "verification on",
          "it makes impersonation of the backend trivial", check_verification_off),
    _rule("TLS-002", "TLS below 1.2 or weak cipher suites", R, "TLS 1.2+, ECDHE with AEAD suites only",
          "outdated encryption is breakable", check_weak_tls),
    _rule("TLS-003", "Generated self-signed certificate on a LAN listener", W,
          "a certificate from your CA, or the fingerprint pinned in clients",
          "clients cannot tell it from an impostor unless they pin its fingerprint (shown at start)",
          check_self_signed),
    _rule("TLS-004", "Private key readable by others", R, "mode 0600", "the key is the device's identity",
          check_key_permissions),
    _rule("TLS-005", "Certificate expiring within 30 days (refused when expired)", W,
          "renew before 30 days remain", "expiry breaks every secure link at once", check_cert_expiry),
    _rule("AUTH-001", "Password or token sent in clear text", N, "TLS on every link that carries credentials",
          "it can be read off the wire", check_cleartext_credentials),
    _rule("AUTH-002", "Weak or default password", R,
          f"{LONG_PASSWORD}+ random characters, or 8-64 with lower, upper, digit and special",
          "guessable credentials are the first thing attackers try", check_weak_password),
    _rule("AUTH-003", "One password used twice", R, "a secret per station, user and plugin",
          "one leak opens all of them", check_reused_password),
    _rule("AUTH-004", "Secret written in clear in the config", R, "!secret or !env_var",
          "configs get pasted into tickets and backups", check_secret_in_clear),
    _rule("AUTH-005", "Web login rules", B,
          "6 failures lock 30 min; forced first change; 8-64 chars with 4 classes; 30 min idle logout",
          "taken from the station vendors' own account rules"),
    _rule("AUTH-006", "Short or patterned PIN", R, "8+ random digits",
          "short or patterned PINs fall to guessing", check_pin),
    _rule("LOG-001", "Debug logging", W, "log_level: info",
          "debug logs may leak sensitive data (logs redact secrets and tokens at every level regardless)",
          check_debug_log),
    _rule("LOG-002", "Audit log", B, "always on, hash-chained, `ampgate audit verify`",
          "consulting the audit log is how abuse is found"),
    _rule("DATA-001", "Encryption at rest", B, "AES-256-GCM for tokens and credentials; scrypt for passwords",
          "a stolen disk must not leak badges or passwords"),
    _rule("DATA-002", "Factory reset", B, "`ampgate factory-reset` before disposal",
          "required before disposal or change of owner"),
    _rule("DATA-003", "Diagnostics export enabled", W, "diagnostics: false",
          "diagnostic bundles can contain private data; exports are redacted", check_diagnostics),
    _rule("DISC-001", "Nothing discovered is trusted", B, "an administrator approves every new device",
          "rogue devices can announce themselves"),
    _rule("PLUG-001", "Third-party plugin not allowed", N, "named in gateway.allow_plugins",
          "arbitrary code in the gateway's process; accepting a risk cannot load code, naming it can",
          check_third_party),
)
