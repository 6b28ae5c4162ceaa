"""The factory reset of a running gateway, for real: ``ampgate run`` in its own process, the reset asked for
in the console with the password, the gateway stops by itself and its data directory is erased on exit."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from gateway.security.audit import AuditLog
from gateway.storage import Storage
from tests.helpers import free_port
from tests.plugins.web.conftest import Client, client_ssl, hidden_value

pytestmark = [pytest.mark.peer, pytest.mark.slow]

NEW_PASSWORD = "Res3t!Proof#Pass"
ROOT = Path(__file__).resolve().parents[3]


async def read_until(stream: asyncio.StreamReader, pattern: str, seen: list[str],
                     limit_s: float = 20) -> re.Match[str]:
    async with asyncio.timeout(limit_s):
        while True:
            line = (await stream.readline()).decode(errors="replace")
            assert line, "ampgate exited early:\n" + "".join(seen)
            seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match


async def test_reset_from_the_console_stops_and_erases(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"web:\n  enabled: true\n  port: {port}\n")
    data = tmp_path / "data"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--config", str(config), "--data-dir", str(data), "run",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=ROOT)
    assert proc.stderr is not None
    seen: list[str] = []
    client = None
    try:
        password = (await read_until(proc.stderr, r"password: (\S+)", seen)).group(1)
        client = Client(f"https://127.0.0.1:{port}", client_ssl(data))
        status, _, _ = await client.login("admin", password)
        assert status == 303
        csrf = await client.csrf()
        status, _, _ = await client.post_form("/password", {"current": password, "new": NEW_PASSWORD,
                                                            "confirm": NEW_PASSWORD, "csrf": csrf})
        assert status == 303
        assert os.path.exists(data / "ampgate.db") and os.path.exists(data / "certs" / "server.key")  # noqa: ASYNC240
        status, page, _ = await client.get("/reset")
        status, page, _ = await client.post_form("/reset", {"password": NEW_PASSWORD, "confirm": "ERASE",
                                                            "csrf": hidden_value(page, "csrf")})
        assert status == 200 and "stopping" in page
        async with asyncio.timeout(20):
            rest = (await proc.stderr.read()).decode(errors="replace")
            code = await proc.wait()
        seen.append(rest)
        assert code == 0, "".join(seen)
        assert "factory reset done" in rest, "".join(seen)
    finally:
        if client is not None:
            await client.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # Everything went: keys, certificates, accounts; a fresh audit log begins with the reset.
    assert not (data / "certs").exists() and not (data / "vault.key").exists()
    storage = Storage(data).open()
    try:
        records = AuditLog(storage).list_sync()
        tables = storage.execute_sync("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'users'")
    finally:
        storage.close()
    assert [r.event for r in records] == ["gateway.factory_reset"] and not tables
    assert records[0].actor == "web:admin@127.0.0.1"  # who asked, in the fresh log
