"""The ``ampgate`` command as a user runs it: a real process, real signals, real exit codes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.yaml"


def ampgate(*args: str, data_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_check_on_the_example_config_is_clean(tmp_path: Path) -> None:
    result = ampgate("--config", str(EXAMPLE), "check", data_dir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 refused" in result.stdout
    data = json.loads(ampgate("--config", str(EXAMPLE), "check", "--format", "json", data_dir=tmp_path).stdout)
    assert data["refused"] == 0


def test_broken_config_exits_2_with_every_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("gateway:\n  log_level: loud\n  nme: x\nnosuchplugin:\n  enabled: true\n")
    result = ampgate("--config", str(config), "check", data_dir=tmp_path / "d")
    assert result.returncode == 2
    assert "config.yaml:2: gateway.log_level: expected one of" in result.stderr
    assert "config.yaml:3: gateway.nme: unknown key 'nme' — fix: did you mean 'name'?" in result.stderr
    assert "config.yaml:4: nosuchplugin: no plugin named 'nosuchplugin'" in result.stderr
    run = ampgate("--config", str(config), "run", data_dir=tmp_path / "d")
    assert run.returncode == 2 and not (tmp_path / "d" / "ampgate.pid").exists()


def test_ports_lists_only_the_console_on_loopback(tmp_path: Path) -> None:
    result = ampgate("--config", str(EXAMPLE), "ports", data_dir=tmp_path)
    assert result.returncode == 0
    rows = [line for line in result.stdout.splitlines()[2:] if line.strip()]
    assert len(rows) == 1 and "127.0.0.1:8443/tcp" in rows[0] and "TLS 1.2+" in rows[0]
    nft = ampgate("--config", str(EXAMPLE), "ports", "--format", "nftables", data_dir=tmp_path)
    assert "table inet ampgate" in nft.stdout and "policy drop" in nft.stdout
    assert "ip daddr 127.0.0.1 tcp dport 8443 accept" in nft.stdout


def test_ports_with_nothing_enabled(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("gateway:\n  name: quiet\n")
    result = ampgate("--config", str(config), "ports", data_dir=tmp_path)
    assert result.returncode == 0 and "Nothing is opened" in result.stdout


def example_on_free_port(tmp_path: Path) -> Path:
    """The example configuration with its one listener (the web console) moved to a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "config.yaml"
    config.write_text(EXAMPLE.read_text().replace("port: 8443", f"port: {port}"))
    return config


def test_run_stops_cleanly_on_sigterm_and_sigint(tmp_path: Path) -> None:
    config = example_on_free_port(tmp_path)
    for sig in (signal.SIGTERM, signal.SIGINT):
        data = tmp_path / sig.name
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), "--data-dir", str(data), "run"],
            stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "ampgate running" in line or not line:
                break
        assert (data / "ampgate.pid").read_text().strip() == str(proc.pid), "".join(lines)
        started = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5, "shutdown must take under 5 s"
        proc.stderr.close()
        assert not (data / "ampgate.pid").exists()
        audit = ampgate("audit", "--json", data_dir=data)
        events = [r["event"] for r in json.loads(audit.stdout)]
        assert "gateway.start" in events and "gateway.stop" in events
        assert ampgate("audit", "verify", data_dir=data).returncode == 0


def test_version_lists_plugins(tmp_path: Path) -> None:
    result = ampgate("version", data_dir=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("ampgate ")


@pytest.mark.parametrize("command", ["check", "ports", "run"])
def test_missing_config_file_is_exit_2(tmp_path: Path, command: str) -> None:
    result = ampgate("--config", str(tmp_path / "nope.yaml"), command, data_dir=tmp_path)
    assert result.returncode == 2 and "cannot read" in result.stderr
