from __future__ import annotations

from typing import Any

from gateway.config.validation import plugin_schema
from gateway.plugin import Manifest

from .._common import STARTED, Instance, exposures  # noqa: F401

MANIFEST = Manifest(name="broken", title="broken", dependencies=(), after=())
CONFIG_SCHEMA = plugin_schema({})


async def async_setup(gw: Any, config: dict[str, Any]) -> Instance:
    raise RuntimeError("cannot reach the device")
