"""Service calls to station commands: the ``charger.*`` capabilities and the OCPP-only ``ocpp.*`` services.

Contract:
- ``charger.set_current_limit {charger, limit_a}``, ``charger.start {charger, id_token?, connector?}``,
  ``charger.stop {charger}``, ``charger.reset {charger, type: soft|hard}``, ``charger.unlock {charger,
  connector?}`` are registered with ``route_by="charger"``: the core routes a call to this plugin when it
  owns ``charger.<charger>``. They never mention OCPP; each returns ``{"accepted": bool, "status": str}``
  (``set_current_limit`` adds the ``limit_a`` it sent after clamping to the station's range).
- ``ocpp.change_configuration`` / ``ocpp.set_variables``, ``ocpp.get_configuration`` / ``ocpp.get_variables``,
  ``ocpp.trigger_message``, ``ocpp.clear_charging_profile`` are admin-only. Secrets cannot be written or read
  through them (passwords live in the configuration), and no value may lower the station's security
  profile (policy: OCPP-011). Every configuration write is audited (without the value).
- ``idtoken.add / revoke / list`` (admin) manage the local id-token list when no other plugin registered
  them (the list is the core's ``IdTokenStore``).
- A hard reset needs an administrator and is audited (ocpp.md §2.6).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import voluptuous as vol

from gateway.context import Role
from gateway.errors import ServiceValidationError, Unauthorized
from gateway.security.idtokens import KINDS, IdTokenError
from gateway.services import ServiceCall
from plugins.ocpp.const import AUDIT_CONFIGURATION, AUDIT_RESET, CHARGER_DOMAIN, DOMAIN, VERSION_16, VERSION_201

if TYPE_CHECKING:
    from plugins.ocpp.central import CentralSystem
    from plugins.ocpp.station import StationRuntime

# Configuration keys and variables that hold secrets or the security profile: never through a service.
SECRET_KEYS: Final = re.compile(r"(?i)(authorizationkey|basicauthpassword|password|secret|privatekey|key$)")
PROFILE_KEYS: Final = re.compile(r"(?i)^securityprofile$")
TRIGGERS: Final = ("BootNotification", "Heartbeat", "MeterValues", "StatusNotification",
                   "FirmwareStatusNotification", "DiagnosticsStatusNotification", "LogStatusNotification",
                   "SignChargingStationCertificate", "TransactionEvent")

CHARGER_KEY = vol.Required("charger")
_text = vol.All(str, vol.Length(min=1, max=500))


def _runtime(central: CentralSystem, call: ServiceCall) -> StationRuntime:
    runtime = central.by_slug.get(str(call.data["charger"]))
    if runtime is None:
        raise ServiceValidationError(f"{call.domain}.{call.service}: charger: no charger named "
                                     f"'{call.data['charger']}'")
    return runtime


def register_services(central: CentralSystem) -> list[Callable[[], None]]:
    services = central.gw.services
    undo: list[Callable[[], None]] = []

    def reg(domain: str, name: str, handler: Any, schema: dict[Any, Any], *, role: Role = Role.OPERATOR,
            routed: bool = False, description: str = "") -> None:
        undo.append(services.register(domain, name, handler, schema=vol.Schema(schema), role=role, owner=DOMAIN,
                                      description=description, route_by="charger" if routed else None))

    # -- charger.* (protocol-free capabilities) -------------------------------------------------------------

    async def set_current_limit(call: ServiceCall) -> dict[str, Any]:
        return await _runtime(central, call).set_current_limit(float(call.data["limit_a"]))

    async def start(call: ServiceCall) -> dict[str, Any]:
        return await _runtime(central, call).start(call.data.get("id_token"), call.data.get("connector"))

    async def stop(call: ServiceCall) -> dict[str, Any]:
        return await _runtime(central, call).stop()

    async def reset(call: ServiceCall) -> dict[str, Any]:
        runtime = _runtime(central, call)
        hard = call.data["type"] == "hard"
        if hard and call.context.role < Role.ADMIN:
            raise Unauthorized(call.context, "hard-reset a charger")
        result = await runtime.reset(hard)
        await central.gw.audit.append(AUDIT_RESET, {"station": runtime.config.identity, "type": call.data["type"],
                                                    "status": result["status"]}, context=call.context)
        return result

    async def unlock(call: ServiceCall) -> dict[str, Any]:
        return await _runtime(central, call).unlock(int(call.data.get("connector", 1)))

    reg(CHARGER_DOMAIN, "set_current_limit", set_current_limit,
        {CHARGER_KEY: str, vol.Required("limit_a"): vol.All(vol.Coerce(float), vol.Range(min=0, max=1000))},
        routed=True, description="limit a charger's current per phase (A); 0 pauses charging")
    reg(CHARGER_DOMAIN, "start", start,
        {CHARGER_KEY: str, vol.Optional("id_token"): vol.All(str, vol.Length(min=1, max=36)),
         vol.Optional("connector"): vol.All(int, vol.Range(min=1, max=99))},
        routed=True, description="start a charging session remotely")
    reg(CHARGER_DOMAIN, "stop", stop, {CHARGER_KEY: str}, routed=True,
        description="stop the running charging session")
    reg(CHARGER_DOMAIN, "reset", reset,
        {CHARGER_KEY: str, vol.Optional("type", default="soft"): vol.In(["soft", "hard"])},
        routed=True, description="restart a charger (soft: when idle; hard: now, admin only)")
    reg(CHARGER_DOMAIN, "unlock", unlock,
        {CHARGER_KEY: str, vol.Optional("connector", default=1): vol.All(int, vol.Range(min=1, max=99))},
        routed=True, description="unlock a connector's cable")

    # -- ocpp.* (OCPP-only operations, admin) ------------------------------------------------------------------

    def refuse_protected(name: str, value: str | None, runtime: StationRuntime) -> None:
        if SECRET_KEYS.search(name):
            raise ServiceValidationError(f"{name} is a secret: station passwords are set in the configuration")
        # policy: OCPP-011 - nothing over OCPP may lower the security profile (A00.FR.005).
        if PROFILE_KEYS.search(name):
            try:
                lower = value is None or int(value) < runtime.config.profile
            except ValueError:
                lower = True
            if lower:
                raise ServiceValidationError(f"{name}: the station's security profile is "
                                             f"{runtime.config.profile}; it can only be raised in the "
                                             "configuration")

    def need(runtime: StationRuntime, version: str) -> None:
        if runtime.link is None:
            raise ServiceValidationError(f"charger {runtime.config.slug} is not connected")
        if runtime.version != version:
            other = {VERSION_16: "ocpp.change_configuration / ocpp.get_configuration",
                     VERSION_201: "ocpp.set_variables / ocpp.get_variables"}[runtime.version or VERSION_16]
            raise ServiceValidationError(f"charger {runtime.config.slug} speaks OCPP {runtime.version}: use {other}")

    async def change_configuration(call: ServiceCall) -> dict[str, Any]:
        runtime = _runtime(central, call)
        need(runtime, VERSION_16)
        key, value = call.data["key"], call.data["value"]
        refuse_protected(key, value, runtime)
        link = runtime.link16()
        assert link is not None
        result = await runtime.command(lambda _: link.change_configuration(key=key, value=value))
        await central.gw.audit.append(AUDIT_CONFIGURATION, {"station": runtime.config.identity, "key": key,
                                                            "status": result["status"]}, context=call.context)
        return result

    async def get_configuration(call: ServiceCall) -> dict[str, Any]:
        runtime = _runtime(central, call)
        need(runtime, VERSION_16)
        link = runtime.link16()
        assert link is not None
        answer = await link.get_configuration(keys=call.data.get("keys") or None)
        for item in answer["configuration"]:
            if isinstance(item, dict) and SECRET_KEYS.search(str(item.get("key", ""))):
                item.pop("value", None)  # write-only secrets (1.6 whitepaper: AuthorizationKey)
        return answer

    def _items(data: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in {
            "component": {"name": v["component"], **({"evse": {"id": v["evse"]}} if v.get("evse") else {})},
            "variable": {"name": v["variable"]},
            "attribute_value": v.get("value"),
        }.items() if v is not None} for v in data["variables"]]

    async def set_variables(call: ServiceCall) -> dict[str, Any]:
        runtime = _runtime(central, call)
        need(runtime, VERSION_201)
        for item in call.data["variables"]:
            if "value" not in item:
                raise ServiceValidationError("ocpp.set_variables: every variable needs a value")
            refuse_protected(str(item["variable"]), str(item["value"]), runtime)
            refuse_protected(f"{item['component']}.{item['variable']}", str(item["value"]), runtime)
        link = runtime.link201()
        assert link is not None
        results = await link.set_variables(items=_items(call.data))
        await central.gw.audit.append(AUDIT_CONFIGURATION, {
            "station": runtime.config.identity,
            "variables": [f"{v['component']}.{v['variable']}" for v in call.data["variables"]],
            "results": [r.get("attribute_status") for r in results if isinstance(r, dict)],
        }, context=call.context)
        return {"results": results}

    async def get_variables(call: ServiceCall) -> dict[str, Any]:
        runtime = _runtime(central, call)
        need(runtime, VERSION_201)
        link = runtime.link201()
        assert link is not None
        results = await link.get_variables(items=_items(call.data))
        for item in results:
            name = str((item.get("variable") or {}).get("name", "")) if isinstance(item, dict) else ""
            if SECRET_KEYS.search(name):
                item.pop("attribute_value", None)
        return {"results": results}

    async def trigger_message(call: ServiceCall) -> dict[str, Any]:
        return await _runtime(central, call).trigger(call.data["message"], call.data.get("connector"))

    async def clear_charging_profile(call: ServiceCall) -> dict[str, Any]:
        return await _runtime(central, call).clear_profile(call.data.get("profile_id"), call.data.get("purpose"))

    variable = vol.Schema({vol.Required("component"): _text, vol.Required("variable"): _text,
                           vol.Optional("evse"): vol.All(int, vol.Range(min=1)),
                           vol.Optional("value"): vol.Coerce(str)})
    reg(DOMAIN, "change_configuration", change_configuration,
        {CHARGER_KEY: str, vol.Required("key"): vol.All(str, vol.Length(min=1, max=50)),
         vol.Required("value"): vol.All(vol.Coerce(str), vol.Length(max=500))},
        role=Role.ADMIN, description="OCPP 1.6 ChangeConfiguration")
    reg(DOMAIN, "get_configuration", get_configuration,
        {CHARGER_KEY: str, vol.Optional("keys"): [vol.All(str, vol.Length(min=1, max=50))]},
        role=Role.ADMIN, description="OCPP 1.6 GetConfiguration")
    reg(DOMAIN, "set_variables", set_variables,
        {CHARGER_KEY: str, vol.Required("variables"): vol.All([variable], vol.Length(min=1, max=20))},
        role=Role.ADMIN, description="OCPP 2.0.1 SetVariables")
    reg(DOMAIN, "get_variables", get_variables,
        {CHARGER_KEY: str, vol.Required("variables"): vol.All([variable], vol.Length(min=1, max=20))},
        role=Role.ADMIN, description="OCPP 2.0.1 GetVariables")
    reg(DOMAIN, "trigger_message", trigger_message,
        {CHARGER_KEY: str, vol.Required("message"): vol.In(TRIGGERS),
         vol.Optional("connector"): vol.All(int, vol.Range(min=0, max=99))},
        role=Role.ADMIN, description="ask a station to send a message now")
    reg(DOMAIN, "clear_charging_profile", clear_charging_profile,
        {CHARGER_KEY: str, vol.Optional("profile_id"): int,
         vol.Optional("purpose"): vol.In(["tx_default", "station_max", "tx"])},
        role=Role.ADMIN, description="remove charging profiles from a station")

    # -- idtoken.* (the core's id-token list; registered here until the core registers them) -------------------

    if not services.has("idtoken", "add"):
        async def token_add(call: ServiceCall) -> dict[str, Any]:
            try:
                entry = await central.tokens.add(call.data["token"], label=call.data.get("label", ""),
                                                 kind=call.data["kind"], context=call.context)
            except IdTokenError as err:
                raise ServiceValidationError(f"idtoken.add: {err}") from None
            return entry.as_dict()

        async def token_revoke(call: ServiceCall) -> dict[str, Any]:
            try:
                changed = await central.tokens.revoke(call.data.get("token"), token_id=call.data.get("id"),
                                                      context=call.context)
            except IdTokenError as err:
                raise ServiceValidationError(f"idtoken.revoke: {err}") from None
            return {"revoked": changed}

        async def token_list(call: ServiceCall) -> dict[str, Any]:
            return {"tokens": [t.as_dict() for t in await central.tokens.list()]}

        reg("idtoken", "add", token_add,
            {vol.Required("token"): vol.All(str, vol.Length(min=1, max=36)),
             vol.Optional("label", default=""): vol.All(str, vol.Length(max=64)),
             vol.Optional("kind", default="rfid"): vol.In(KINDS)},
            role=Role.ADMIN, description="add an id token (RFID badge, key code) to the local list")
        reg("idtoken", "revoke", token_revoke,
            {vol.Exclusive("token", "which"): vol.All(str, vol.Length(min=1, max=36)),
             vol.Exclusive("id", "which"): int},
            role=Role.ADMIN, description="revoke an id token: refused from now on")
        reg("idtoken", "list", token_list, {}, role=Role.ADMIN, description="the id tokens, without values")
    return undo
