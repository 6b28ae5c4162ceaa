"""The software bill of materials (``ampgate sbom``): what runs, with versions, licenses and purls."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import re
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from gateway.commands import sbom as sbom_command
from gateway.security.sbom import (
    UNKNOWN,
    Component,
    components,
    license_of,
    normalise_name,
    purl,
    requirement_names,
    to_cyclonedx,
)

PURL_RE = re.compile(r"^pkg:pypi/[a-z0-9]+(?:-[a-z0-9]+)*@[A-Za-z0-9.%_~-]+$")
SERIAL_RE = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def metadata(**fields: Any) -> Message:
    """Distribution metadata as importlib.metadata returns it (an email message)."""
    message = Message()
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            message[name.replace("_", "-")] = item
    return message


@pytest.fixture(scope="module")
def installed() -> dict[str, Component]:
    return {normalise_name(c.name): c for c in components()}


def test_lists_the_runtime_with_versions(installed: dict[str, Component]) -> None:
    for name in ("voluptuous", "aiohttp", "cryptography", "pyyaml"):
        assert name in installed, name
        assert installed[name].version == importlib.metadata.version(name)
        assert installed[name].direct, f"{name} is in ampgate's own requirements"
    assert not installed["pytest"].direct, "test extras are not runtime requirements"
    assert installed["voluptuous"].license != UNKNOWN
    assert installed["aiohttp"].summary


def test_each_distribution_once_in_name_order(installed: dict[str, Component]) -> None:
    names = [normalise_name(c.name) for c in components()]
    assert names == sorted(set(names))
    assert len(installed) == len(names)


@pytest.mark.parametrize(
    ("fields", "licenses", "expression"),
    [
        ({"License_Expression": "Apache-2.0 OR BSD-3-Clause", "License": "ignored"}, (), "Apache-2.0 OR BSD-3-Clause"),
        ({"License": "MIT"}, ("MIT",), None),
        ({"License": "Apache 2.0"}, ("Apache-2.0",), None),
        ({"License": "MIT OR Apache-2.0"}, (), "MIT OR Apache-2.0"),
        ({"License": "PSFL"}, ("PSFL",), None),
        ({"License": "UNKNOWN", "Classifier": ["License :: OSI Approved :: MIT License"]}, ("MIT",), None),
        (
            {"License": "Copyright (c) 2015\nAll rights reserved.\n...", "Classifier": [
                "Programming Language :: Python", "License :: OSI Approved :: BSD License"
            ]},
            ("BSD License",), None,
        ),
        ({"Classifier": ["License :: DFSG approved", "License :: OSI Approved :: MIT License"]}, ("MIT",), None),
        ({"Classifier": ["License :: OSI Approved :: Apache Software License"]}, ("Apache Software License",), None),
        ({"Summary": "no license at all"}, (), None),
    ],
)
def test_license_sources(fields: dict[str, Any], licenses: tuple[str, ...], expression: str | None) -> None:
    assert license_of(metadata(**fields)) == (licenses, expression)


def test_unknown_license() -> None:
    assert Component(name="x", version="1").license == UNKNOWN
    assert Component(name="x", version="1", licenses=("MIT", "BSD License")).license == "MIT, BSD License"


def test_requirement_names() -> None:
    assert requirement_names([
        "aiohttp>=3.9", "PyYAML>=6.0", "async_upnp-client>=0.38", "tomli; python_version < '3.11'",
        'pytest>=8; extra == "test"', "zope.interface[docs] (>=5)",
    ]) == {"aiohttp", "pyyaml", "async-upnp-client", "tomli", "zope-interface"}


def test_purls_are_well_formed() -> None:
    assert purl("PyYAML", "6.0.3") == "pkg:pypi/pyyaml@6.0.3"
    assert purl("async_upnp_client", "0.49.0") == "pkg:pypi/async-upnp-client@0.49.0"
    assert purl("zope.interface", "1.0+local.1") == "pkg:pypi/zope-interface@1.0%2Blocal.1"
    for component in components():
        assert PURL_RE.match(component.purl), component.purl


def test_cyclonedx_document() -> None:
    items = components()
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    bom = to_cyclonedx(items, serial_number="urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79", timestamp=when)
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["specVersion"] == "1.5"
    assert bom["version"] == 1
    assert bom["serialNumber"] == "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79"
    assert bom["metadata"]["timestamp"] == "2024-05-01T12:00:00Z"
    root = bom["metadata"]["component"]
    assert root["name"] == "ampgate" and root["type"] == "application" and root["purl"].startswith("pkg:pypi/ampgate@")
    json.dumps(bom)  # plain JSON

    listed = bom["components"]
    assert len(listed) == len(items) - 1, "ampgate is the described component, not one of its components"
    refs = [c["bom-ref"] for c in listed]
    assert len(set(refs)) == len(refs) and root["bom-ref"] not in refs
    for entry in listed:
        assert entry["type"] == "library"
        assert entry["name"] and entry["version"]
        assert PURL_RE.match(entry["purl"]) and entry["bom-ref"] == entry["purl"]
        licenses = entry.get("licenses", [])
        if any("expression" in choice for choice in licenses):
            assert len(licenses) == 1 and set(licenses[0]) == {"expression"}
        else:
            for choice in licenses:
                assert set(choice) == {"license"} and len(choice["license"]) == 1
                assert set(choice["license"]) <= {"id", "name"}
    by_name = {c["name"].lower(): c for c in listed}
    assert by_name["voluptuous"]["version"] == importlib.metadata.version("voluptuous")
    assert by_name["aiohttp"]["purl"] == f"pkg:pypi/aiohttp@{importlib.metadata.version('aiohttp')}"

    (graph,) = bom["dependencies"]
    assert graph["ref"] == root["bom-ref"]
    assert by_name["aiohttp"]["bom-ref"] in graph["dependsOn"]
    assert set(graph["dependsOn"]) <= set(refs)


def test_cyclonedx_defaults_are_fresh() -> None:
    first, second = to_cyclonedx([]), to_cyclonedx([])
    assert SERIAL_RE.match(first["serialNumber"]) and first["serialNumber"] != second["serialNumber"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["metadata"]["timestamp"])
    assert first["metadata"]["component"]["name"] == "ampgate"
    assert first["components"] == []


# -- ampgate sbom ---------------------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir")
    parser.add_argument("--config")
    sub = parser.add_subparsers()
    sbom_command.register(sub)
    args = parser.parse_args(["sbom", *argv])
    return int(args.func(args))


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli() == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "LICENSE", "DIRECT"]
    voluptuous = next(line for line in lines if line.startswith("voluptuous "))
    assert importlib.metadata.version("voluptuous") in voluptuous and voluptuous.endswith("yes")
    assert "required directly by ampgate" in lines[-1]


def test_cli_cyclonedx(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("--format", "cyclonedx") == 0
    bom = json.loads(capsys.readouterr().out)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.5"
    assert any(c["name"] == "aiohttp" for c in bom["components"])


def test_cli_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "bom.json"
    assert run_cli("--format", "cyclonedx", "--output", str(target)) == 0
    assert json.loads(target.read_text(encoding="utf-8"))["bomFormat"] == "CycloneDX"
    assert str(target) in capsys.readouterr().out
    assert run_cli("--output", str(tmp_path / "missing" / "bom.txt")) == 1
    assert "cannot write" in capsys.readouterr().err
