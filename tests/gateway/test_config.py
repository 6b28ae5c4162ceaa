"""Every malformed YAML gives file:line errors (all at once) and exit code 2; nothing starts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import voluptuous as vol

from gateway.config import load_config
from gateway.config import validation as cv
from gateway.config.yaml_loader import SecretStr
from gateway.errors import ConfigError

SCHEMAS = {
    "ocpp": cv.plugin_schema({
        vol.Optional("port", default=8887): cv.port,
        vol.Optional("bind", default="127.0.0.1"): cv.bind_address,
        vol.Optional("password"): cv.secret,
        vol.Optional("heartbeat", default="5m"): cv.duration,
        vol.Optional("tls"): cv.tls_schema(server=True),
        vol.Optional("stations", default=[]): [vol.Schema({vol.Required("id"): cv.string,
                                                         vol.Optional("profile", default=2): vol.In([1, 2, 3])})],
    }),
    "mqtt": cv.plugin_schema({vol.Required("host"): cv.host}),
}


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, SCHEMAS)
    return info.value.errors


def test_valid_config_loads_with_defaults_and_disabled_plugins(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
        gateway:
          name: site
        ocpp:
          enabled: true
          port: "9000"
          heartbeat: 1h30m
        mqtt:
          enabled: false
    """), SCHEMAS)
    assert cfg.core["log_level"] == "info" and cfg.core["accept_risk"] == []
    assert cfg.plugins["ocpp"]["port"] == 9000 and cfg.plugins["ocpp"]["heartbeat"] == 5400.0
    assert cfg.plugins["mqtt"] == {"enabled": False}
    assert cfg.enabled() == ["ocpp"]
    assert str(cfg.where("ocpp", "port")) == "config.yaml:6"


def test_wrong_type_names_file_line_key_and_fix(tmp_path: Path) -> None:
    (err,) = errors_of(write(tmp_path, """
        ocpp:
          enabled: true
          port: abc
    """))
    assert err.startswith("config.yaml:4: ocpp.port: expected int between 1 and 65535, got 'abc' — fix:")


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    errs = errors_of(write(tmp_path, """
        gateway:
          log_level: loud
        ocpp:
          enabled: true
          port: 70000
          heartbeat: soon
          stations:
            - id: cp01
              profile: 7
        mqtt:
          enabled: true
    """))
    joined = "\n".join(errs)
    assert "config.yaml:3: gateway.log_level: expected one of" in joined
    assert "config.yaml:6: ocpp.port:" in joined
    assert "config.yaml:7: ocpp.heartbeat: expected a duration" in joined
    assert "config.yaml:10: ocpp.stations.0.profile:" in joined
    assert "config.yaml:11: mqtt.host: required key missing — fix: add 'host: ...'" in joined
    assert len(errs) == 5


def test_unknown_keys_suggest_the_nearest(tmp_path: Path) -> None:
    errs = errors_of(write(tmp_path, """
        ocpp:
          enabled: true
          portt: 9000
        ocp:
          enabled: false
    """))
    joined = "\n".join(errs)
    assert "config.yaml:4: ocpp.portt: unknown key 'portt' — fix: did you mean 'port'?" in joined
    assert "config.yaml:5: ocp: no plugin named 'ocp' — fix: did you mean 'ocpp'?" in joined


def test_tabs_are_an_error_with_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("gateway:\n\tname: x\n")
    (err,) = errors_of(path)
    assert err.startswith("config.yaml:2:") and "tab" in err


def test_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    (err,) = errors_of(write(tmp_path, """
        ocpp:
          port: 1
          port: 2
    """))
    assert err.startswith("config.yaml:4: duplicate key 'port' (first at line 3)")


def test_unknown_tag(tmp_path: Path) -> None:
    (err,) = errors_of(write(tmp_path, """
        gateway:
          name: !python/object:os.system x
    """))
    assert err.startswith("config.yaml:3: unknown tag") and "!secret" in err


def test_secret_from_secrets_yaml_and_missing_secret(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("ocpp_pw: s3cret-Value-123\n")
    cfg = load_config(write(tmp_path, """
        ocpp:
          enabled: true
          password: !secret ocpp_pw
    """), SCHEMAS)
    assert cfg.plugins["ocpp"]["password"] == "s3cret-Value-123"
    assert isinstance(cfg.raw["ocpp"]["password"], SecretStr)
    (err,) = errors_of(write(tmp_path, """
        ocpp:
          password: !secret nope
    """))
    assert err.startswith("config.yaml:3: !secret nope: not found in")


def test_secret_without_secrets_file(tmp_path: Path) -> None:
    (err,) = errors_of(write(tmp_path, "ocpp:\n  password: !secret pw\n"))
    assert err.startswith("config.yaml:2: !secret pw: no secrets.yaml") and "fix:" in err


def test_env_var_with_and_without_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMPGATE_TEST_HOST", "broker.lan")
    cfg = load_config(write(tmp_path, """
        mqtt:
          enabled: true
          host: !env_var AMPGATE_TEST_HOST
        ocpp:
          enabled: true
          port: !env_var AMPGATE_TEST_UNSET_PORT 9100
    """), SCHEMAS)
    assert cfg.plugins["mqtt"]["host"] == "broker.lan" and cfg.plugins["ocpp"]["port"] == 9100
    (err,) = errors_of(write(tmp_path, "mqtt:\n  host: !env_var AMPGATE_TEST_UNSET\n"))
    assert err.startswith("config.yaml:2: !env_var AMPGATE_TEST_UNSET: the variable is not set")


def test_include_and_include_loop(tmp_path: Path) -> None:
    (tmp_path / "ocpp.yaml").write_text("enabled: true\nport: bad\n")
    (err,) = errors_of(write(tmp_path, "ocpp: !include ocpp.yaml\n"))
    assert err.startswith("ocpp.yaml:2: ocpp.port: expected int"), err
    (tmp_path / "a.yaml").write_text("x: !include b.yaml\n")
    (tmp_path / "b.yaml").write_text("y: !include a.yaml\n")
    (err,) = errors_of(write(tmp_path, "ocpp: !include a.yaml\n"))
    assert err.startswith("b.yaml:1: !include loop: config.yaml -> a.yaml -> b.yaml -> a.yaml")


def test_missing_include(tmp_path: Path) -> None:
    (err,) = errors_of(write(tmp_path, "ocpp: !include nowhere.yaml\n"))
    assert err.startswith("config.yaml:1: !include nowhere.yaml: file not found")


def test_broken_yaml_syntax(tmp_path: Path) -> None:
    (err,) = errors_of(write(tmp_path, "ocpp:\n  port: [1, 2\n"))
    assert err.startswith("config.yaml:") and "fix:" in err


def test_top_level_must_be_mapping_and_sections_mappings(tmp_path: Path) -> None:
    (err,) = errors_of(write(tmp_path, "- a\n- b\n"))
    assert "top level must be a mapping" in err
    (err,) = errors_of(write(tmp_path, "ocpp: 5\n"))
    assert err.startswith("config.yaml:1: ocpp: expected a mapping")


def test_missing_file(tmp_path: Path) -> None:
    (err,) = errors_of(tmp_path / "nope.yaml")
    assert "cannot read" in err


def test_accept_risk_entries_are_validated(tmp_path: Path) -> None:
    errs = errors_of(write(tmp_path, """
        gateway:
          accept_risk:
            - rule: ocpp 5
              reason: short
              expires: someday
    """))
    joined = "\n".join(errs)
    assert "gateway.accept_risk.0.rule: expected a rule id" in joined
    assert "gateway.accept_risk.0.reason: expected a reason of at least 10 characters" in joined
    assert "gateway.accept_risk.0.expires: expected a date" in joined


@pytest.mark.parametrize(("validator", "good", "expected"), [
    (cv.port, "443", 443),
    (cv.host, "Broker.LAN", "broker.lan"),
    (cv.host, "[::1]", "::1"),
    (cv.cidr, "192.168.1.7/24", "192.168.1.0/24"),
    (cv.duration, "2h", 7200.0),
    (cv.duration, "250ms", 0.25),
    (cv.duration, 30, 30.0),
    (cv.url("ws", "wss"), "wss://csms.example:443/ocpp", "wss://csms.example:443/ocpp"),
    (cv.tls_version, "TLSv1.3", "1.3"),
])
def test_validators_accept_and_coerce(validator, good, expected) -> None:  # type: ignore[no-untyped-def]
    assert validator(good) == expected


@pytest.mark.parametrize(("validator", "bad"), [
    (cv.port, 0), (cv.port, True), (cv.port, 1.5), (cv.host, "http://x"), (cv.host, "a b"),
    (cv.cidr, "300.1.1.1"), (cv.duration, "soon"), (cv.duration, -1), (cv.url("wss"), "ws://x"),
    (cv.url("wss"), "wss://x:abc/"), (cv.tls_version, "2.0"), (cv.boolean, "maybe"), (cv.bind_address, "lan"),
])
def test_validators_refuse_with_a_fix(validator, bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(vol.Invalid, match="fix: "):
        validator(bad)
