"""A test plugin that declares one listener taken from its config, so policy paths can be driven."""

from __future__ import annotations

from typing import Any

import voluptuous as vol

from gateway.config import validation as cv
from gateway.config.validation import plugin_schema
from gateway.plugin import Manifest
from gateway.security.exposure import Listener, TlsSpec

from .._common import STARTED, Instance

MANIFEST = Manifest(name="exposer", title="exposer")
CONFIG_SCHEMA = plugin_schema({
    vol.Optional("bind", default="127.0.0.1"): cv.bind_address,
    vol.Optional("port", default=9999): cv.port,
    vol.Optional("writes", default=False): cv.boolean,
    vol.Optional("tls"): cv.tls_schema(server=True),
})


def exposures(config: dict[str, Any]) -> list[Listener]:
    return [Listener(plugin="exposer", protocol="test", bind=config["bind"], port=config["port"],
                     writes=config["writes"], tls=TlsSpec.from_config(config.get("tls")),
                     config_path=("exposer", "bind"))]


async def async_setup(gw: Any, config: dict[str, Any]) -> Instance:
    STARTED.append("exposer")
    return Instance("exposer")
