"""End to end: ``ampgate demo`` as a user starts it (a subprocess), driven through the web console in a real
headless Chromium (Debian's ``chromium``, Playwright).

The test logs in with the one-time password the demo printed, waits until both simulated stations are
charging (``/api/states``), lowers the site limit through the API the console's own scripts use
(the console's "Set site limit" button on the chargers page), and asserts on what
the stations actually received: each station prints every SetChargingProfile limit it gets
(``demo: <id> limit <A> A``). Both stations are on L2, so the limits they hold must add up to no more than
the site limit per phase. It also checks that the demo's configuration passes ``ampgate check`` with nothing
refused, accepted or warned, that the demo listens on loopback only, that a read-only MQTT client on the
demo's local Mosquitto sees the stations charging, and that SIGINT stops it cleanly. The overview
screenshot goes to ``test-artifacts/demo-overview.png`` (and ``docs/plugins/img/`` when
``AMPGATE_DOC_SCREENSHOTS=1`` or when the docs have none yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright, expect

from gateway.security import tls
from tests.helpers import free_port
from tests.peers.mqtt_client import MqttPeer

pytestmark = [pytest.mark.peer, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DOC_IMAGE = ROOT / "docs" / "plugins" / "img" / "demo-overview.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NEW_PASSWORD = "Gr33n!Volt#Demo"
ONE_TIME_RE = re.compile(r"password: (\S+)")
LIMIT_RE = re.compile(r"demo: (CP\d) limit ([0-9.]+) A")
SITE_LIMIT_A = 10.0
LOOPBACK = ("127.0.0.1", "[::1]", "::1")
VIEWER_RE = re.compile(r"-p (\d+) --cafile (\S+) -u viewer -P (\S+)")


@dataclass
class Demo:
    proc: asyncio.subprocess.Process
    directory: Path
    base: str
    lines: list[str] = field(default_factory=list)

    def limits(self, since: int = 0) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"CP1": [], "CP2": []}
        for line in self.lines[since:]:
            if m := LIMIT_RE.search(line):
                out[m.group(1)].append(float(m.group(2)))
        return out

    def output(self) -> str:
        return "\n".join(self.lines)


async def until(check: Callable[[], Any], within: float, what: str, demo: Demo | None = None) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if demo is not None and demo.proc.returncode is not None:
            raise AssertionError(f"the demo exited ({demo.proc.returncode}) while waiting for {what}:\n"
                                 + demo.output())
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n" + (demo.output() if demo else "")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running_demo(tmp_path: Path) -> AsyncIterator[Demo]:
    port = free_port()
    directory = tmp_path / "demo"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--data-dir", str(directory), "demo", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    demo = Demo(proc=proc, directory=directory, base=f"https://127.0.0.1:{port}")

    async def read() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            demo.lines.append(line.decode(errors="replace").rstrip())

    reader = asyncio.create_task(read())
    try:
        yield demo
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await asyncio.wait_for(reader, 5)


def listening_addresses(pid: int) -> list[str]:
    """Local addresses of the TCP and UDP sockets the process listens on (``ss``, iproute2)."""
    out = subprocess.run(["ss", "-H", "-lntup"], capture_output=True, text=True, check=True).stdout
    return [line.split()[4] for line in out.splitlines() if f"pid={pid}," in line]


async def login(page: Page, base: str, one_time: str) -> None:
    await page.goto(base + "/")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", one_time)
    await page.click("button[type=submit]")
    await page.wait_for_url(base + "/password")
    await page.fill("input[name=current]", one_time)
    await page.fill("input[name=new]", NEW_PASSWORD)
    await page.fill("input[name=confirm]", NEW_PASSWORD)
    await page.click("form[action='/password'] button[type=submit]")
    await page.wait_for_url(base + "/")


async def api(page: Page, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """A request from the page itself, as the console's scripts make it (session cookie + CSRF header)."""
    answer: list[Any] = await page.evaluate(
        """async ([method, path, body]) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch(path, {method, credentials: 'same-origin',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                body: body === null ? undefined : JSON.stringify(body)});
            return [r.status, await r.json()];
        }""", [method, path, body])
    return answer[0], answer[1]


async def test_demo_site_charges_and_follows_the_site_limit(tmp_path: Path) -> None:
    started = time.monotonic()
    ARTIFACTS.mkdir(exist_ok=True)
    async with running_demo(tmp_path) as demo:
        match = await until(lambda: ONE_TIME_RE.search(demo.output()), 30, "the one-time password", demo)
        await until(lambda: "Ctrl-C stops the demo" in demo.output(), 30, "the demo banner", demo)
        assert re.search(r"certificate  SHA-256 [0-9A-F:]{95}", demo.output())

        # Nothing listens off loopback.
        addresses = listening_addresses(demo.proc.pid)
        assert len(addresses) >= 3, addresses  # console, OCPP, Modbus meters (Mosquitto is a child process)
        assert all(a.rsplit(":", 1)[0] in LOOPBACK for a in addresses), addresses

        # The demo's configuration passes the policy check with nothing refused, accepted or warned.
        check = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "--config", str(demo.directory / "config.yaml"),
            "--data-dir", str(demo.directory / "data"), "check",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT)
        report = (await asyncio.wait_for(check.communicate(), 60))[0].decode()
        assert check.returncode == 0, report
        assert "0 refused, 0 accepted, 0 warnings" in report
        config = (demo.directory / "config.yaml").read_text()
        assert "accept_risk" not in config and "0.0.0.0" not in config
        broker_conf = (demo.directory / "mqtt" / "mosquitto.conf").read_text()
        assert re.findall(r"^listener (\d+) (\S+)$", broker_conf, re.M)[0][1] == "127.0.0.1", broker_conf

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                # The gateway's CA is not in the browser's store (this test checks the banner's fingerprint).
                context = await browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
                page = await context.new_page()
                page.set_default_timeout(15_000)
                await login(page, demo.base, match.group(1))

                async def both_charging() -> bool:
                    values = []
                    for charger in ("cp1", "cp2"):
                        status, state = await api(page, "GET", f"/api/states/charger.{charger}")
                        values.append(status == 200 and state["value"] == "charging")
                    return all(values)

                await until(both_charging, 40, "both stations charging", demo)
                await until(lambda: all(demo.limits().values()), 20, "a limit at each station", demo)
                before = demo.limits()

                # The local Mosquitto (mosquitto is a test dependency: its absence fails, never skips) carries
                # the site too: a read-only visitor sees the stations charging.
                viewer = VIEWER_RE.search(demo.output())
                assert viewer, "the demo started no local Mosquitto: install mosquitto (scripts/system-deps.sh)"
                with MqttPeer(port=int(viewer.group(1)), username="viewer", password=viewer.group(3),
                              client_id="demo-viewer", ssl_context=tls.client_context(ca=viewer.group(2))) as peer:
                    peer.subscribe("ampgate/demo/#")
                    for charger in ("cp1", "cp2"):
                        await peer.wait_for(lambda r, c=charger: r.topic == f"ampgate/demo/charger.{c}/state"
                                            and r.payload == b"charging")

                # The overview with the site alive: both cars charging, PV, grid, the house.
                await page.goto(demo.base + "/")
                await expect(page.locator("body")).to_contain_text("sensor.pv_roof_power")
                await page.wait_for_timeout(1500)  # a few live updates
                await page.screenshot(path=str(ARTIFACTS / "demo-overview.png"))  # the first screen, for the docs
                assert before["CP1"][-1] >= 6 and before["CP2"][-1] >= 6, before
                assert before["CP1"][-1] + before["CP2"][-1] > SITE_LIMIT_A  # the new limit must bite

                # Lower the site limit (per phase, for all chargers together) with the console's button.
                mark = len(demo.lines)
                await page.goto(demo.base + "/chargers")
                await page.fill("form[action='/site/limit'] input[name=limit_a]", str(SITE_LIMIT_A))
                await page.click("form[action='/site/limit'] button.primary")
                await expect(page.locator("body")).to_contain_text(f"site limit set to {SITE_LIMIT_A} A")

                def within_limit() -> bool:
                    new = demo.limits(mark)
                    last = {cp: (new[cp] or before[cp])[-1] for cp in ("CP1", "CP2")}
                    # Both are on L2 (CP2 is wired there, CP1 uses every phase): their sum is what L2 carries.
                    return bool(new["CP1"] or new["CP2"]) and last["CP1"] + last["CP2"] <= SITE_LIMIT_A

                await until(within_limit, 15, "the stations to follow the site limit", demo)
                new = demo.limits(mark)
                for cp in ("CP1", "CP2"):
                    assert demo.limits()[cp], f"{cp} never received a SetChargingProfile"
                    assert (new[cp] or before[cp])[-1] <= SITE_LIMIT_A, (cp, new, before)
                status, state = await api(page, "GET", "/api/states/sensor.loadmanager_site_limit")
                assert status == 200 and state["attributes"]["limit_a"] == SITE_LIMIT_A, state

                # After: the load manager's site limit and the stations that follow it.
                await page.goto(demo.base + "/")
                await page.wait_for_timeout(1000)
                await page.screenshot(path=str(ARTIFACTS / "demo-overview-limited.png"), full_page=True)
            finally:
                await browser.close()

        # Ctrl-C stops everything cleanly.
        demo.proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(demo.proc.wait(), 15) == 0, demo.output()
        assert "demo: stopping" in demo.output()
        assert "Traceback" not in demo.output(), demo.output()

    if os.environ.get("AMPGATE_DOC_SCREENSHOTS") or not DOC_IMAGE.exists():
        DOC_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / "demo-overview.png", DOC_IMAGE)
    assert time.monotonic() - started < 90
