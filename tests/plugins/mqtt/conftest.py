"""A real Mosquitto for the MQTT tests: free loopback ports, TLS, a password file and an ACL.

``broker`` starts one Mosquitto per test (about 50 ms; every test gets an empty retained store) from files
made once per session: a CA and a server certificate for 127.0.0.1/localhost (``gateway.security.certs``),
a password file written by ``mosquitto_passwd -b``, and an ACL giving

- ``gw_a`` readwrite on ``siteA/#`` (and the Home Assistant discovery tree, for the discovery tests),
- ``gw_b`` readwrite on ``siteB/#`` only,
- ``watcher`` (the tests' own client) readwrite on everything.

The process runs as a subprocess with ``-c <conf>`` and is terminated after the test, also when it fails;
its log is attached to the failure. Mosquitto missing is a failed set-up, never a skip (``make test``
installs it through scripts/system-deps.sh).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.security.certs import create_ca, issue_server, write_cert, write_pair
from tests.helpers import free_port

USERS = ("gw_a", "gw_b", "watcher")
START_TIMEOUT_S = 10.0


def _tool(name: str, *fallbacks: str) -> str:
    found = shutil.which(name) or next((f for f in fallbacks if os.access(f, os.X_OK)), None)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make test` (scripts/system-deps.sh installs mosquitto), "
                    "or apt-get install mosquitto", pytrace=False)
    return found


@dataclass
class BrokerFiles:
    directory: Path
    ca: Path
    other_ca: Path  # a CA that did not sign the broker's certificate
    server_cert: Path
    server_key: Path
    passwd: Path
    acl: Path
    passwords: dict[str, str]


@dataclass
class Broker:
    files: BrokerFiles
    directory: Path
    port: int = 0
    tls_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def passwords(self) -> dict[str, str]:
        return self.files.passwords

    def _config(self) -> Path:
        f = self.files
        conf = self.directory / "mosquitto.conf"
        conf.write_text(textwrap.dedent(f"""\
            per_listener_settings false
            allow_anonymous false
            password_file {f.passwd}
            acl_file {f.acl}
            persistence false
            log_dest stderr
            log_type error
            log_type warning
            log_type notice
            connection_messages true
            listener {self.port} 127.0.0.1
            listener {self.tls_port} 127.0.0.1
            cafile {f.ca}
            certfile {f.server_cert}
            keyfile {f.server_key}
            tls_version tlsv1.2
            """) + ("user root\n" if os.geteuid() == 0 else ""))
        return conf

    def start(self) -> None:
        """Start on the ports chosen at the first start (a restart keeps them)."""
        mosquitto = _tool("mosquitto", "/usr/sbin/mosquitto")
        for attempt in range(3):
            if not self.port or (attempt and self.starts == 0):
                self.port, self.tls_port = free_port(), free_port()
                while self.tls_port == self.port:
                    self.tls_port = free_port()
            log = self.directory / f"mosquitto-{self.starts}-{attempt}.log"
            self.logs.append(log)
            with log.open("wb") as out:
                self.proc = subprocess.Popen([mosquitto, "-c", str(self._config())], stdout=out,
                                             stderr=subprocess.STDOUT)
            if self._wait_ready():
                self.starts += 1
                return
            self.stop()
            if "Address already in use" not in log.read_text(errors="replace"):
                break
            time.sleep(0.2)  # a restart on the same ports while the kernel still holds them
        pytest.fail(f"mosquitto did not start:\n{self.log_text()}", pytrace=False)

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            if all(_accepts(port) for port in (self.port, self.tls_port)):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in self.logs if p.exists())


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker_files(tmp_path_factory: pytest.TempPathFactory) -> BrokerFiles:
    directory = tmp_path_factory.mktemp("mosquitto")
    ca = create_ca("Ampgate test MQTT CA")
    server = issue_server(ca, common_name="localhost", hosts=["127.0.0.1", "localhost"])
    other = create_ca("Some other CA")
    write_cert(directory / "ca.pem", [ca])
    write_cert(directory / "other_ca.pem", [other])
    write_pair(server, directory / "server.pem", directory / "server.key")
    passwd = directory / "passwd"
    passwords = {user: secrets.token_urlsafe(18) for user in USERS}
    tool = _tool("mosquitto_passwd")
    for index, (user, password) in enumerate(passwords.items()):
        # -b puts the password on the command line: acceptable for throwaway test users only.
        subprocess.run([tool, *(["-c"] if index == 0 else []), "-b", str(passwd), user, password],
                       check=True, capture_output=True, timeout=30)
    passwd.chmod(0o600)
    acl = directory / "acl"
    acl.write_text(textwrap.dedent("""\
        user gw_a
        topic readwrite siteA/#
        topic readwrite homeassistant/#

        user gw_b
        topic readwrite siteB/#

        user watcher
        topic readwrite #
        """))
    acl.chmod(0o600)
    return BrokerFiles(directory=directory, ca=directory / "ca.pem", other_ca=directory / "other_ca.pem",
                       server_cert=directory / "server.pem", server_key=directory / "server.key", passwd=passwd,
                       acl=acl, passwords=passwords)


@pytest.fixture
def broker(broker_files: BrokerFiles, tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[Broker]:
    instance = Broker(files=broker_files, directory=tmp_path_factory.mktemp("broker"))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"mosquitto log:\n{instance.log_text()}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    setattr(item, f"rep_{report.when}", report)  # type: ignore[attr-defined]
    return report
