"""An optional local Mosquitto for the demo: TLS on 127.0.0.1, accounts only, an ACL per account.

Started only when ``mosquitto`` is installed. Its server certificate is issued by the gateway's local CA (the
MQTT plugin verifies it with that CA and the host name ``127.0.0.1``). Two accounts: ``ampgate`` (the
gateway: its own topic tree and Home Assistant discovery) and ``viewer`` (read-only, for a visitor's
``mosquitto_sub``). The password file holds PBKDF2-SHA512 hashes in Mosquitto 2's ``$7$`` format, written
here so that no password ever appears on a command line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import secrets
import shutil
import socket
import textwrap
from dataclasses import dataclass
from pathlib import Path

from gateway.security import certs

PREFIX = "ampgate/demo"
GATEWAY_USER = "ampgate"
VIEWER_USER = "viewer"
PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for $7$ (Mosquitto 2.0)
SALT_BYTES = 12
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def mosquitto() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)


def password_line(user: str, password: str) -> str:
    """One line of a Mosquitto 2 password file (``$7$``: PBKDF2-HMAC-SHA512, base64 salt and hash)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"{user}:$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass(slots=True, kw_only=True)
class Broker:
    directory: Path
    port: int
    ca_cert: Path
    gateway_password: str
    viewer_password: str
    proc: asyncio.subprocess.Process | None = None

    @classmethod
    def create(cls, directory: Path, *, port: int, data_dir: Path) -> Broker:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        ca = certs.load_gateway_ca(data_dir)
        server = certs.issue_server(ca, common_name="localhost", hosts=["127.0.0.1", "localhost"])
        certs.write_pair(server, directory / "server.pem", directory / "server.key", chain=[ca])
        certs.write_cert(directory / "ca.pem", [ca])
        broker = cls(directory=directory, port=port, ca_cert=directory / "ca.pem",
                     gateway_password=secrets.token_urlsafe(18), viewer_password=secrets.token_urlsafe(12))
        passwd = directory / "passwd"
        passwd.touch(mode=0o600)
        passwd.write_text(password_line(GATEWAY_USER, broker.gateway_password) + "\n"
                          + password_line(VIEWER_USER, broker.viewer_password) + "\n")
        acl = directory / "acl"
        acl.write_text(textwrap.dedent(f"""\
            user {GATEWAY_USER}
            topic readwrite {PREFIX}/#
            topic readwrite homeassistant/#

            user {VIEWER_USER}
            topic read {PREFIX}/#
            topic read homeassistant/#
            """))
        acl.chmod(0o600)
        conf = directory / "mosquitto.conf"
        conf.write_text(textwrap.dedent(f"""\
            per_listener_settings false
            allow_anonymous false
            password_file {passwd}
            acl_file {acl}
            persistence false
            log_dest stderr
            log_type error
            log_type warning
            listener {port} 127.0.0.1
            cafile {directory / "ca.pem"}
            certfile {directory / "server.pem"}
            keyfile {directory / "server.key"}
            tls_version tlsv1.2
            """) + ("user root\n" if os.geteuid() == 0 else ""))
        return broker

    async def start(self) -> None:
        binary = mosquitto()
        assert binary is not None
        log = (self.directory / "mosquitto.log").open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                binary, "-c", str(self.directory / "mosquitto.conf"), stdout=log, stderr=log,
                start_new_session=True)  # Ctrl-C reaches the demo, which stops the broker after the gateway
        finally:
            log.close()
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while not await asyncio.to_thread(_accepts, self.port):
            if self.proc.returncode is not None or asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise RuntimeError("mosquitto did not start: "
                                   + (self.directory / "mosquitto.log").read_text(errors="replace"))
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
