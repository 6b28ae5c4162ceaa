"""Shared test helpers: a real gateway on a temporary data dir, started from YAML text."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.bootstrap import Plan, prepare
from gateway.core import Gateway
from gateway.security.netaddr import HostInfo

# Tests pretend the host sits on a private LAN, whatever this machine's interfaces are, so that policy
# results do not depend on where the suite runs.
LAN_HOST = HostInfo({"lo": ("127.0.0.1", "::1"), "eth0": ("192.168.1.10",)})


def write_config(directory: Path, yaml_text: str, secrets: str | None = None) -> Path:
    path = directory / "config.yaml"
    path.write_text(textwrap.dedent(yaml_text))
    if secrets is not None:
        secret_file = directory / "secrets.yaml"
        secret_file.write_text(textwrap.dedent(secrets))
        secret_file.chmod(0o600)
    return path


def plan_for(directory: Path, yaml_text: str, secrets: str | None = None) -> Plan:
    return prepare(write_config(directory, yaml_text, secrets), data_dir=directory / "data",
                   host=LAN_HOST, today=dt.date.today())


@contextlib.asynccontextmanager
async def running_gateway(directory: Path, yaml_text: str, secrets: str | None = None,
                          *, allow_refused: bool = False) -> AsyncIterator[Gateway]:
    """Start a real gateway (policy checked, plugins set up) and stop it afterwards."""
    plan = plan_for(directory, yaml_text, secrets)
    if plan.report.refused and not allow_refused:
        raise AssertionError("policy refused the test config:\n" + "\n".join(
            f"{r.rule.id} {r.finding.message} ({r.where})" for r in plan.report.refused))
    gw = Gateway(plan.config, directory / "data")
    await gw.async_start(plan)
    try:
        yield gw
    finally:
        await gw.async_stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
