"""End to end in a real headless Chromium (Debian's ``chromium`` package, driven by Playwright): first login
with the one-time password, the forced change, a state change pushed live into the page, an enrollment
approved, no CSP violation on the way; screenshots of the overview saved to ``test-artifacts/``.

Set ``AMPGATE_DOC_SCREENSHOTS=1`` to also refresh the screenshots under ``docs/plugins/img/``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import voluptuous as vol
from playwright.async_api import Page, async_playwright, expect

from gateway.core import Gateway
from gateway.services import ServiceCall
from tests.plugins.web.conftest import ONE_TIME_RE, web_env

pytestmark = [pytest.mark.peer, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts"
DOC_IMAGES = ROOT / "docs" / "plugins" / "img"
NEW_PASSWORD = "Gr33n!Volt#Garage"


def site_states(states: object) -> None:
    set_ = states.set  # type: ignore[attr-defined]
    set_("sensor.grid_power", 1980.0, "W", owner="site")
    set_("sensor.pv_roof_power", 5240.0, "W", owner="site")
    set_("charger.cp_garage", "Charging", None, {"vendor": "Alfen", "model": "Eve Single Pro", "firmware": "6.4.0",
                                                 "phases": 3, "min_current_a": 6, "max_current_a": 16,
                                                 "limit_a": 11, "connected": True, "session_energy_wh": 8420.0},
         owner="site")
    set_("sensor.cp_garage_power", 7010.0, "W", owner="site")
    set_("sensor.cp_garage_energy", 1284310.0, "Wh", owner="site")
    set_("sensor.cp_garage_current_l1", 10.1, "A", owner="site")
    set_("charger.cp_visitor", "Available", None, {"vendor": "ABB", "model": "Terra AC", "phases": 3,
                                                   "connected": True}, owner="site")
    set_("sensor.cp_visitor_power", 0.0, "W", owner="site")
    set_("sensor.grid_voltage_l1", 231.2, "V", owner="site")


def charger_services(gw: Gateway, calls: list[ServiceCall]) -> None:
    """The charger capability services as a charger plugin registers them (routed by the charger id)."""

    def handler(call: ServiceCall) -> dict[str, object]:
        calls.append(call)
        return {"accepted": True, "status": "Accepted"}

    schemas = {
        "set_current_limit": {vol.Required("charger"): str, vol.Required("limit_a"): vol.Coerce(float)},
        "start": {vol.Required("charger"): str, vol.Optional("id_token"): str},
        "stop": {vol.Required("charger"): str},
        "reset": {vol.Required("charger"): str, vol.Optional("hard", default=False): bool},
        "unlock": {vol.Required("charger"): str, vol.Optional("connector", default=1): int},
    }
    for name, schema in schemas.items():
        gw.services.register("charger", name, handler, schema=schema, owner="site", route_by="charger")
    gw.bus.fire("charger_transaction", {"charger": "cp_garage", "event": "started", "transaction": 41,
                                        "state": "active", "energy_wh": None, "stop_reason": None}, origin="site")


async def no_csp_violations(page: Page, messages: list[str]) -> None:
    bad = [m for m in messages if "Content Security Policy" in m or "Refused to" in m]
    assert not bad, bad


async def test_first_login_forced_change_live_update_and_enrollment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with web_env(tmp_path, users=False) as env:
        password = ONE_TIME_RE.search(capsys.readouterr().err)
        assert password, "no one-time password printed"
        site_states(env.gw.states)
        calls: list[ServiceCall] = []
        charger_services(env.gw, calls)
        await env.gw.enrollment.request("ocpp", "CP-NEW-042", address="192.168.1.77",
                                        fingerprint="5e:3a:91:c4:22:0b:7f:aa", info={"vendor": "Alfen"})
        messages: list[str] = []
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                # The browser trusts nothing but what the test hands it: the gateway's own CA is not in its
                # store, so certificate errors are waved through here (the client tests verify against the CA).
                context = await browser.new_context(ignore_https_errors=True,
                                                    viewport={"width": 1280, "height": 860})
                page = await context.new_page()
                page.on("console", lambda m: messages.append(m.text))
                page.set_default_timeout(10_000)

                # First login with the one-time password printed at start.
                await page.goto(env.base + "/")
                assert page.url.startswith(env.base + "/login")
                await page.fill("input[name=username]", "admin")
                await page.fill("input[name=password]", password.group(1))
                await page.click("button[type=submit]")
                await page.wait_for_url(env.base + "/password")
                await expect(page.locator(".flash-warn")).to_contain_text("one-time password")
                assert await page.locator("nav.nav").count() == 0  # nothing else offered

                # The forced change: a weak password is refused, a strong one accepted.
                await page.fill("input[name=current]", password.group(1))
                await page.fill("input[name=new]", "password1")
                await page.fill("input[name=confirm]", "password1")
                await page.click("form[action='/password'] button[type=submit]")
                await expect(page.locator(".flash-error")).to_contain_text("upper-case")
                await page.fill("input[name=current]", password.group(1))
                await page.fill("input[name=new]", NEW_PASSWORD)
                await page.fill("input[name=confirm]", NEW_PASSWORD)
                await page.click("form[action='/password'] button[type=submit]")
                await page.wait_for_url(env.base + "/")
                await expect(page.locator(".flash-ok")).to_contain_text("Password changed")

                # Live: a state set on the gateway shows up without a reload.
                await expect(page.locator(".live.on")).to_be_visible()
                cell = page.locator('td[data-entity="sensor.grid_power"][data-field="value"]')
                await expect(cell).to_have_text("1.98 kW")
                env.gw.states.set("sensor.grid_power", 3150.0, "W", owner="site")
                await expect(cell).to_have_text("3.15 kW")
                await expect(page.locator('[data-flow="grid"]')).to_have_text("3.15 kW")
                env.gw.states.set("sensor.pv_carport_power", 1200.0, "W", owner="site")
                await expect(page.locator('td[data-entity="sensor.pv_carport_power"][data-field=value]')).to_have_text("1.20 kW")
                await page.wait_for_timeout(1300)  # let the highlight fade before the picture
                await page.screenshot(path=str(ARTIFACTS / "web-overview.png"), full_page=True)

                # Approve the waiting station.
                await page.goto(env.base + "/enrollment")
                row = page.locator('tr[data-enrollment="ocpp/CP-NEW-042"]')
                await row.locator("button[value=approve]").click()
                await expect(page.locator(".flash-ok")).to_contain_text("approved")
                assert env.gw.enrollment.is_trusted("ocpp", "CP-NEW-042", "5e3a91c4220b7faa")
                await page.screenshot(path=str(ARTIFACTS / "web-enrollment.png"), full_page=True)

                # A button per charger service; the command carries who pressed it.
                await page.goto(env.base + "/chargers")
                garage = page.locator("#cp_garage")
                await garage.locator("form[action='/chargers/cp_garage/set_current_limit'] input[name=limit_a]").fill(
                    "8")
                await garage.locator("form[action='/chargers/cp_garage/set_current_limit'] button").click()
                await expect(page.locator(".flash-ok")).to_contain_text("Set current limit on cp_garage: accepted")
                assert calls[-1].data == {"charger": "cp_garage", "limit_a": 8.0}
                assert (calls[-1].context.origin, calls[-1].context.principal) == ("web", "admin")
                await page.goto(env.base + "/chargers")  # from the top, without the flash
                await page.screenshot(path=str(ARTIFACTS / "web-chargers.png"), full_page=True)
                await page.goto(env.base + "/security")
                await page.screenshot(path=str(ARTIFACTS / "web-security.png"), full_page=True)

                # The same console on a phone, in the dark theme.
                phone = await browser.new_context(ignore_https_errors=True, viewport={"width": 390, "height": 844},
                                                  device_scale_factor=2, is_mobile=True, has_touch=True,
                                                  color_scheme="dark")
                await phone.add_cookies(await context.cookies())
                mobile = await phone.new_page()
                mobile.on("console", lambda m: messages.append(m.text))
                await mobile.goto(env.base + "/")
                await expect(mobile.locator(".live.on")).to_be_visible()
                await mobile.screenshot(path=str(ARTIFACTS / "web-overview-phone.png"), full_page=True)
                await no_csp_violations(page, messages)
            finally:
                await browser.close()
    assert (ARTIFACTS / "web-overview.png").stat().st_size > 10_000
    if os.environ.get("AMPGATE_DOC_SCREENSHOTS"):
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        for name in ("web-overview.png", "web-overview-phone.png", "web-enrollment.png", "web-chargers.png",
                     "web-security.png"):
            shutil.copyfile(ARTIFACTS / name, DOC_IMAGES / name)
