"""Schemathesis fuzzes the API from its own OpenAPI document against the real server: no request, however
malformed, gets a 5xx; every answer has a documented status, the documented content type and a body that
matches the documented schema.

Schemathesis runs as a separate process (its command line, ``st run``) against the gateway served by this
test's event loop, with an admin token, bounded in examples and time.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest

from tests.plugins.web.conftest import web_env

pytestmark = [pytest.mark.peer, pytest.mark.slow]

ST = Path(sys.executable).with_name("st")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MAX_EXAMPLES = 12
RUN_TIMEOUT_S = 150


async def test_no_5xx_and_responses_match_the_document(tmp_path: Path) -> None:
    async with web_env(tmp_path) as env:
        env.gw.states.set("sensor.grid_power", 1200.0, "W", owner="test")
        env.gw.states.set("charger.cp1", "Available", owner="test")
        await env.gw.enrollment.request("ocpp", "CP-1", address="192.168.1.50")
        secret, _ = await env.console.store.create_token(name="fuzz", scope="admin", created_by="admin",
                                                         now=env.console.clock())
        report = tmp_path / "schemathesis"
        proc = await asyncio.create_subprocess_exec(
            str(ST), "run", f"{env.base}/api/openapi.json",
            "--checks", CHECKS,
            "--header", f"Authorization: Bearer {secret}",
            "--tls-verify", str(env.data_dir / "certs" / "ca.pem"),
            "--max-examples", str(MAX_EXAMPLES),
            "--exclude-path", "/api/stream",  # an endless response; its parameters are tested in test_api
            # It would revoke the fuzzer's own token (id 1) and leave the rest of the run at 401; revocation is
            # tested in test_accounts and test_api.
            "--exclude-path", "/api/tokens/{token_id}",
            "--request-timeout", "10",
            "--workers", "1",
            "--seed", "8443",
            "--report", "junit", "--report-dir", str(report),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        text = out.decode(errors="replace")
        assert proc.returncode == 0, text[-6000:]
        assert "Authentication failed" not in text, text[-3000:]
        generated = re.search(r"(\d+) generated, (\d+) passed", text)
        assert generated and generated.group(1) == generated.group(2) and int(generated.group(1)) > 200, text[-3000:]
        # The fuzzing did reach the handlers: it created accounts and badges through the API.
        records = await env.gw.audit.list(limit=1000)
        assert any(r.actor.startswith("web:token:fuzz") for r in records), json.dumps([r.event for r in records])
