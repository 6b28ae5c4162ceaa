"""A charging session survives a kill -9 of the gateway between start and stop.

The gateway runs as a real process (``python -m gateway --config ... --data-dir ... run``); a real station
starts a transaction (1.6 and 2.0.1), the gateway is killed with SIGKILL, started again, the stations
reconnect and stop their transactions, and the records must be complete. The badge is added with the real
``ampgate token add --stdin`` beforehand.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from tests.helpers import free_port, write_config
from tests.peers.ocpp_station import station
from tests.plugins.ocpp.conftest import PASSWORDS, SECRETS, Pki, ocpp_yaml

pytestmark = [pytest.mark.peer, pytest.mark.slow]

STATIONS = """
    - id: CP16
      password: !secret cp16
      version: "1.6"
    - id: CP201
      password: !secret cp201
      version: "2.0.1"
"""


# ``ampgate`` itself, with the ``token`` command registered even before the core lists it in
# COMMAND_MODULES (then this shim changes nothing).
AMPGATE = ("import sys; import gateway.commands as c\n"
           "if 'token' not in c.COMMAND_MODULES: c.COMMAND_MODULES = (*c.COMMAND_MODULES, 'token')\n"
           "from gateway.cli import main; sys.exit(main(sys.argv[1:]))")


def ampgate(config: Path, data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", AMPGATE, "--config", str(config), "--data-dir", str(data), *args],
                          input=stdin, capture_output=True, text=True, timeout=30, check=False)


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the gateway exited during start-up"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the gateway did not open its port")


@pytest.fixture
def gateway_process(tmp_path: Path, pki: Pki) -> Iterator[tuple[Path, Path, int]]:
    port = free_port()
    config = write_config(tmp_path, ocpp_yaml(pki, port, stations=STATIONS), SECRETS)
    yield config, tmp_path / "data", port


def start(config: Path, data: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "--config", str(config), "--data-dir", str(data),
                             "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wait_port(port, proc)
    return proc


async def test_transactions_survive_kill_9(gateway_process: tuple[Path, Path, int], pki: Pki) -> None:
    config, data, port = gateway_process
    added = ampgate(config, data, "token", "add", "--label", "Anna", "--stdin", stdin="BADGE-KILL9\n")
    assert added.returncode == 0, added.stderr
    url = f"wss://127.0.0.1:{port}/ocpp"
    proc = start(config, data, port)
    try:
        async with station(url, "CP16", "1.6", password=PASSWORDS["CP16"],
                           ssl_context=pki.station_context()) as cp16, \
                station(url, "CP201", "2.0.1", password=PASSWORDS["CP201"],
                        ssl_context=pki.station_context()) as cp201:
            await cp16.call(call16.BootNotification(charge_point_vendor="v", charge_point_model="m"))
            started = await cp16.call(call16.StartTransaction(connector_id=1, id_tag="BADGE-KILL9",
                                                              meter_start=1200, timestamp="2026-01-01T10:00:00Z"))
            assert started.id_tag_info["status"] == "Accepted"
            await cp201.call(call201.BootNotification(charging_station={"model": "m", "vendor_name": "v"},
                                                      reason="PowerUp"))
            await cp201.call(call201.TransactionEvent(
                event_type="Started", timestamp="2026-01-01T10:00:00Z", trigger_reason="Authorized", seq_no=0,
                transaction_info={"transaction_id": "K9-201", "charging_state": "Charging"},
                id_token={"id_token": "BADGE-KILL9", "type": "ISO14443"}, evse={"id": 1, "connector_id": 1},
                meter_value=[{"timestamp": "2026-01-01T10:00:00Z", "sampled_value": [{"value": 500.0}]}]))
            proc.send_signal(signal.SIGKILL)  # no shutdown, no flush: what a power cut of the process does
            proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        proc = start(config, data, port)
        async with station(url, "CP16", "1.6", password=PASSWORDS["CP16"],
                           ssl_context=pki.station_context()) as cp16, \
                station(url, "CP201", "2.0.1", password=PASSWORDS["CP201"],
                        ssl_context=pki.station_context()) as cp201:
            # Accepted before the kill: the stations carry on without a new BootNotification.
            stop = await cp16.call(call16.StopTransaction(meter_stop=9200, timestamp="2026-01-01T11:00:00Z",
                                                          transaction_id=started.transaction_id,
                                                          reason="Remote", id_tag="BADGE-KILL9"))
            assert stop.id_tag_info["status"] == "Accepted"
            await cp201.call(call201.TransactionEvent(
                event_type="Ended", timestamp="2026-01-01T11:00:00Z", trigger_reason="StopAuthorized", seq_no=1,
                transaction_info={"transaction_id": "K9-201", "stopped_reason": "Local"},
                evse={"id": 1, "connector_id": 1},
                meter_value=[{"timestamp": "2026-01-01T11:00:00Z", "sampled_value": [{"value": 4500.0}]}]))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    db = sqlite3.connect(data / "ampgate.db")
    db.row_factory = sqlite3.Row
    rows = {r["station"]: dict(r) for r in db.execute("SELECT * FROM ocpp_transactions")}
    db.close()
    tx16, tx201 = rows["CP16"], rows["CP201"]
    assert tx16["id"] == started.transaction_id and tx16["state"] == "completed"
    assert (tx16["meter_start_wh"], tx16["meter_stop_wh"], tx16["energy_wh"]) == (1200, 9200, 8000)
    assert tx16["stop_reason"] == "Remote" and tx16["auth_status"] == "accepted"
    assert tx16["id_token"].startswith("v1:") and "BADGE" not in str(tx16)
    assert tx201["state"] == "completed" and tx201["energy_wh"] == 4000 and tx201["stop_reason"] == "Local"
    assert len(rows) == 2
    await asyncio.sleep(0)
