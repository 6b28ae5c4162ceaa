"""The demo site on disk: certificates (issued by the ``ampgate certs`` command code), ``secrets.yaml`` and
``config.yaml``. Everything listens on 127.0.0.1; nothing in the configuration accepts a risk.

Layout of the demo directory::

    config.yaml  secrets.yaml (0600)  stations/CP2.pem CP2.key ca.pem  data/ (the gateway's data dir)
    mqtt/ (mosquitto.conf, passwd, acl, certificates: only when Mosquitto is installed)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import textwrap
from dataclasses import dataclass
from pathlib import Path

import yaml

from demo.broker import PREFIX, Broker, mosquitto
from gateway.commands import certs as certs_command
from gateway.security import certs
from gateway.security.passwords import generate_password

HOSTS = ("127.0.0.1", "localhost")
CP1, CP2 = "CP1", "CP2"
CP1_PASSWORD_LENGTH = 20  # what `ampgate ocpp password` prints; OCPP-009 wants at least 16 bytes
FUSE_A = 25
MARGIN_A = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    root: Path
    data_dir: Path
    config: Path
    ca: Path  # the gateway's local CA: what the stations trust
    cp1_password: str
    cp2_cert: Path
    cp2_key: Path
    fingerprint: str  # SHA-256 of the gateway's server certificate (console and OCPP)
    web_port: int
    ocpp_port: int
    meter_port: int
    broker: Broker | None = None  # a local Mosquitto, when one is installed

    @property
    def console_url(self) -> str:
        return f"https://127.0.0.1:{self.web_port}/"

    @property
    def ocpp_url(self) -> str:
        return f"wss://127.0.0.1:{self.ocpp_port}/ocpp"


def _certs_command(handler_args: argparse.Namespace) -> None:
    """Run an ``ampgate certs`` action quietly (its report would drown the demo's banner)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = handler_args.func(handler_args)
    if code != 0:
        raise RuntimeError(f"ampgate certs failed: {out.getvalue().strip()}")


def mqtt_text(broker: Broker) -> str:
    return textwrap.dedent(f"""
    mqtt:
      enabled: true
      host: 127.0.0.1
      port: {broker.port}
      username: ampgate
      password: !secret demo_mqtt
      client_id: ampgate-demo
      prefix: {PREFIX}
      tls:
        ca: {broker.ca_cert}        # the broker's certificate comes from the gateway's local CA
      discovery:
        enabled: true
        node_id: ampgate_demo
    """)


def config_text(*, web_port: int, ocpp_port: int, meter_port: int, cp2_fingerprint: str, log_level: str) -> str:
    return textwrap.dedent(f"""\
    # The Ampgate demo site, written by `ampgate demo`. Everything listens on 127.0.0.1.
    gateway:
      name: Ampgate demo
      log_level: {log_level}

    web:
      enabled: true
      bind: 127.0.0.1
      port: {web_port}

    ocpp:
      enabled: true
      bind: 127.0.0.1
      port: {ocpp_port}
      heartbeat_interval: 5m
      tls: {{}}                      # the gateway's own certificate; station certificates from its local CA
      stations:
        - id: {CP1}
          version: "1.6"
          profile: 2                # Basic Auth over TLS
          password: !secret demo_cp1
          phases: 3
          max_current_a: 16
        - id: {CP2}
          version: "2.0.1"
          profile: 3                # client certificate (ampgate certs client {CP2})
          fingerprint: "{cp2_fingerprint}"
          phases: 1
          max_current_a: 32

    modbus:
      enabled: true
      meters:
        - name: grid
          model: eastron_sdm630
          host: 127.0.0.1
          port: {meter_port}
          poll_interval: 1s
          timeout: 1s
        - name: pv_roof             # the meter on the PV inverter's output, behind the same TCP gateway
          model: eastron_sdm630
          host: 127.0.0.1
          port: {meter_port}
          unit_id: 2
          poll_interval: 2s
          timeout: 1s

    loadmanager:
      enabled: true
      fuse_a: {FUSE_A}
      margin_a: {MARGIN_A}
      grid_meter:
        current_l1: sensor.grid_current_l1
        current_l2: sensor.grid_current_l2
        current_l3: sensor.grid_current_l3
        power: sensor.grid_power
        max_age: 5s
      chargers:
        cp2: {{rotation: L2}}         # the single-phase car is wired to L2
    """)


def create(root: Path, *, web_port: int, ocpp_port: int, meter_port: int, mqtt_port: int | None = None,
           log_level: str = "warning") -> Site:
    """Write certificates, secrets and configuration under ``root``; returns where everything is."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir = root / "data"
    data_dir.mkdir(mode=0o700, exist_ok=True)
    stations = root / "stations"
    stations.mkdir(mode=0o700, exist_ok=True)

    common = {"config": str(root / "config.yaml"), "data_dir": str(data_dir), "log_level": None}
    # `ampgate certs create --host 127.0.0.1 --host localhost`
    _certs_command(argparse.Namespace(**common, host=list(HOSTS), func=certs_command.handle_create))
    # `ampgate certs client CP2 --out stations --force`: the profile-3 station's certificate
    _certs_command(argparse.Namespace(**common, name=CP2, out=stations, role=None, days=certs.LEAF_DAYS,
                                      force=True, func=certs_command.handle_client))
    own = certs.ensure_gateway_certs(data_dir, hosts=list(HOSTS))
    cp2_cert, cp2_key = stations / f"{CP2}.pem", stations / f"{CP2}.key"
    cp2_fingerprint = certs.fingerprint_sha256(certs.load_certs(cp2_cert)[0])

    broker = None
    if mqtt_port is not None and mosquitto() is not None:
        broker = Broker.create(root / "mqtt", port=mqtt_port, data_dir=data_dir)

    password = generate_password(CP1_PASSWORD_LENGTH)
    secrets_file = root / "secrets.yaml"
    secrets_file.touch(mode=0o600)
    secrets_file.chmod(0o600)
    values = {"demo_cp1": password, **({"demo_mqtt": broker.gateway_password} if broker else {})}
    secrets_file.write_text(yaml.safe_dump(values))
    config = root / "config.yaml"
    text = config_text(web_port=web_port, ocpp_port=ocpp_port, meter_port=meter_port,
                       cp2_fingerprint=cp2_fingerprint, log_level=log_level)
    config.write_text(text + (mqtt_text(broker) if broker else ""))
    return Site(root=root, data_dir=data_dir, config=config, ca=own.ca_cert, cp1_password=password,
                cp2_cert=cp2_cert, cp2_key=cp2_key, fingerprint=own.fingerprint, web_port=web_port,
                ocpp_port=ocpp_port, meter_port=meter_port, broker=broker)
