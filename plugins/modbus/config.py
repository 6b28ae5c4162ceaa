"""The plugin's configuration schema: meters, the server and its register map (validated with the shared
validators of ``gateway.config.validation``; every error says what to write instead)."""

from __future__ import annotations

import re
from typing import Any

import voluptuous as vol

from gateway.config import validation as cv

from .const import (
    DEFAULT_POLL_INTERVAL_S,
    DEFAULT_PORT,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    DEFAULT_TLS_PORT,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    MAX_RETRIES,
    MAX_UNIT_ID,
    MIN_POLL_INTERVAL_S,
)
from .maps import known_models, parse_map
from .servermap import SERVER_TYPES, Entry, ServerMap

TRANSPORTS = ("tcp", "tls", "rtu", "rtu_over_tcp")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_ENTITY = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
_SERVICE = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
DEFAULT_ROLES = {"Reader": "read"}


def _name(value: Any) -> str:
    text = str(value)
    if not _NAME.match(text):
        raise cv.invalid("expected a meter name of lower-case letters, digits and _", value,
                         "write for example grid or pv_roof (it becomes sensor.<name>_power)")
    return text


def _entity(value: Any) -> str:
    text = str(value)
    if not _ENTITY.match(text):
        raise cv.invalid("expected an entity id", value, "write for example sensor.grid_power")
    return text


def _service(value: Any) -> str:
    text = str(value)
    if not _SERVICE.match(text):
        raise cv.invalid("expected a service name", value, "write for example loadmanager.set_site_limit")
    return text


def _range(low: int, high: int) -> vol.All:
    return vol.All(vol.Coerce(int), vol.Range(min=low, max=high))


def _scale(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise cv.invalid("expected a number", value, "write for example 0.1") from None
    if number == 0 or number != number:
        raise cv.invalid("expected a non-zero scale", value, "write for example 0.1")
    return number


_METER_FIELDS = vol.Schema({
    vol.Required("name"): _name,
    vol.Required("model"): vol.In([*known_models(), "custom"],
                                  msg=f"expected one of {', '.join([*known_models(), 'custom'])}"),
    vol.Optional("custom"): dict,
    vol.Optional("transport", default="tcp"): cv.one_of(*TRANSPORTS),
    vol.Optional("host"): cv.host,
    vol.Optional("port"): cv.port,
    vol.Optional("device"): cv.path,
    vol.Optional("baudrate", default=9600): vol.In([1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200]),
    vol.Optional("parity", default="N"): vol.In(["N", "E", "O"]),
    vol.Optional("stopbits", default=1): vol.In([1, 2]),
    vol.Optional("bytesize", default=8): vol.In([7, 8]),
    vol.Optional("unit_id", default=1): _range(1, MAX_UNIT_ID),  # never 0: that is broadcast
    vol.Optional("poll_interval", default=DEFAULT_POLL_INTERVAL_S): cv.duration_between(MIN_POLL_INTERVAL_S),
    vol.Optional("timeout", default=DEFAULT_TIMEOUT_S): cv.duration_between(0.01),
    vol.Optional("retries", default=DEFAULT_RETRIES): _range(0, MAX_RETRIES),
    vol.Optional("load_management", default=True): cv.boolean,
    vol.Optional("sunspec_base"): _range(0, 0xFFFF),
    vol.Optional("tls"): cv.tls_schema(server=False),
})


def _check_meter(meter: dict[str, Any]) -> dict[str, Any]:
    transport = meter["transport"]
    if transport == "rtu":
        if "device" not in meter:
            raise vol.Invalid(f"meter {meter['name']}: transport rtu needs device{cv.FIX}write device: /dev/ttyUSB0")
        if "host" in meter or "tls" in meter:
            raise vol.Invalid(f"meter {meter['name']}: host and tls do not apply to rtu{cv.FIX}remove them")
    else:
        if "host" not in meter:
            raise vol.Invalid(f"meter {meter['name']}: transport {transport} needs host"
                              f"{cv.FIX}write host: 192.168.1.30")
        meter.setdefault("port", DEFAULT_TLS_PORT if transport == "tls" else DEFAULT_PORT)
    if transport == "tls":
        tls = meter.setdefault("tls", cv.tls_schema(server=False)({}))
        if not tls.get("enabled", True):
            raise vol.Invalid(f"meter {meter['name']}: transport tls with tls disabled{cv.FIX}use transport: tcp")
        # MB-TCP-Security requires mutual authentication: the gateway must present a certificate.
        if not tls.get("cert") or not tls.get("key"):
            raise vol.Invalid(f"meter {meter['name']}: Modbus/TCP Security needs our client certificate"
                              f"{cv.FIX}set tls.cert and tls.key (and tls.ca for the meter's CA)")
    elif "tls" in meter:
        raise vol.Invalid(f"meter {meter['name']}: tls given but transport is {transport}{cv.FIX}"
                          "set transport: tls, or remove the tls block")
    if meter["model"] == "custom":
        if "custom" not in meter:
            raise vol.Invalid(f"meter {meter['name']}: model custom needs a custom: register map")
        try:
            parse_map(meter["custom"])
        except vol.Invalid as err:
            raise vol.Invalid(f"meter {meter['name']}: custom map: {err}") from None
    elif "custom" in meter:
        raise vol.Invalid(f"meter {meter['name']}: custom: only applies to model: custom")
    return meter


METER_SCHEMA = vol.All(_METER_FIELDS, _check_meter)

_REGISTER_FIELDS: dict[Any, Any] = {
    vol.Optional("address"): _range(0, 0xFFFF),
    vol.Optional("entity"): _entity,
    vol.Optional("type", default="float32"): vol.In(list(SERVER_TYPES)),
    vol.Optional("word_order", default="big"): vol.In(["big", "little"]),
    vol.Optional("scale", default=1.0): _scale,
    vol.Optional("description", default=""): cv.string,
}
INPUT_SCHEMA = vol.Schema({**_REGISTER_FIELDS, vol.Required("entity"): _entity})
HOLDING_SCHEMA = vol.Schema({
    **_REGISTER_FIELDS,
    vol.Optional("writable", default=False): cv.boolean,
    vol.Optional("service"): _service,
    vol.Optional("field"): vol.All(str, vol.Length(min=1, max=64)),
    vol.Optional("data", default={}): {str: vol.Any(str, int, float, bool)},
})


def _server_tls(value: Any) -> dict[str, Any]:
    # MB-TCP-Security: "mutual client/server authentication"; a server that does not require the client's
    # certificate is not Modbus/TCP Security, so anything but "required" is an error, not a downgrade.
    if isinstance(value, dict) and value.get("client_auth", "required") != "required":
        raise cv.invalid("Modbus/TCP Security always requires client certificates", value.get("client_auth"),
                         "remove tls.client_auth (it is always required)")
    block: dict[str, Any] = cv.tls_schema(server=True)(value or {})
    block["client_auth"] = "required"
    return block


SERVER_FIELDS = vol.Schema({
    vol.Optional("enabled", default=False): cv.boolean,
    vol.Optional("bind", default="127.0.0.1"): cv.bind_address,
    vol.Optional("port"): cv.port,
    vol.Optional("unit_id", default=1): _range(1, MAX_UNIT_ID),
    vol.Optional("allow_from", default=[]): cv.ensure_list(cv.cidr),
    vol.Optional("tls"): _server_tls,
    vol.Optional("roles", default=DEFAULT_ROLES): {
        vol.All(str, vol.Length(min=1, max=128)): cv.one_of("read", "write"),
    },
    vol.Optional("input_registers", default=[]): [INPUT_SCHEMA],
    vol.Optional("holding_registers", default=[]): [HOLDING_SCHEMA],
})


def server_tls_on(server: dict[str, Any]) -> bool:
    return bool(server.get("tls") and server["tls"].get("enabled", True))


def build_server_map(server: dict[str, Any]) -> ServerMap:
    """The published map: entries in config order; an entry without address follows the previous one."""
    entries: list[Entry] = []
    for table, key in ((FC_READ_INPUT, "input_registers"), (FC_READ_HOLDING, "holding_registers")):
        address = 0
        for item in server[key]:
            address = item.get("address", address)
            writable = bool(item.get("writable", False))
            if writable and (not item.get("service") or not item.get("field")):
                raise vol.Invalid(f"{key} at {address}: writable needs service and field"
                                  f"{cv.FIX}write service: loadmanager.set_site_limit and field: limit_a")
            if not writable and not item.get("entity"):
                raise vol.Invalid(f"{key} at {address}: give the entity it mirrors")
            entry = Entry(table=table, address=address, entity=item.get("entity"), type=item["type"],
                          word_order=item["word_order"], scale=item["scale"], writable=writable,
                          service=item.get("service"), field=item.get("field"),
                          data=tuple(sorted(item.get("data", {}).items())), description=item["description"])
            entries.append(entry)
            address += entry.words
    try:
        return ServerMap(entries, server["unit_id"])
    except ValueError as err:
        raise vol.Invalid(str(err)) from None


def _check_server(server: dict[str, Any]) -> dict[str, Any]:
    server.setdefault("port", DEFAULT_TLS_PORT if server_tls_on(server) else DEFAULT_PORT)
    if server["enabled"]:
        if not server["input_registers"] and not server["holding_registers"]:
            raise vol.Invalid(f"server enabled with an empty map{cv.FIX}list input_registers to publish")
        build_server_map(server)
    return server


SERVER_SCHEMA = vol.All(SERVER_FIELDS, _check_server)


def _check_meters(meters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names: set[str] = set()
    links: dict[tuple[Any, ...], dict[str, Any]] = {}
    for meter in meters:
        if meter["name"] in names:
            raise vol.Invalid(f"two meters named {meter['name']}{cv.FIX}give every meter its own name")
        names.add(meter["name"])
        if meter["transport"] == "rtu":
            key: tuple[Any, ...] = ("rtu", meter["device"])
            line = tuple(meter[k] for k in ("baudrate", "parity", "stopbits", "bytesize"))
        else:
            key = ("net", meter["host"], meter["port"])
            line = (meter["transport"], repr(sorted((meter.get("tls") or {}).items())))
        first = links.setdefault(key, {"line": line, "name": meter["name"], "units": set()})
        if first["line"] != line:
            raise vol.Invalid(f"meters {first['name']} and {meter['name']} share {key[1]} with different "
                              f"line settings{cv.FIX}one bus (or host:port) has one set of settings")
        if meter["unit_id"] in first["units"]:
            raise vol.Invalid(f"meter {meter['name']}: unit_id {meter['unit_id']} is used twice on {key[1]}")
        first["units"].add(meter["unit_id"])
    return meters


CONFIG_SCHEMA = cv.plugin_schema({
    vol.Optional("meters", default=[]): vol.All([METER_SCHEMA], _check_meters),
    vol.Optional("server", default={}): SERVER_SCHEMA,
})
