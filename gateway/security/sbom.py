"""The software bill of materials: every Python distribution the running gateway can import.

Controllers' hardening guides publish their open-source inventories; ``ampgate sbom`` is ours (see
POLICY.md, "Not applicable to a software gateway"). It reads the environment actually running, not a lock
file, so what it lists is what runs.

Contract:
- ``components()`` lists each installed distribution once (the first on ``sys.path`` wins, as for imports),
  sorted by normalised name, with its version, license, summary and whether Ampgate requires it directly
  (the ``ampgate`` distribution's ``Requires-Dist`` without extras).
- The license comes from ``License-Expression`` (PEP 639), else a one-line ``License`` field, else the
  trove classifiers; otherwise it is ``unknown``. Nothing is guessed: an ambiguous classifier ("BSD
  License") stays a name rather than becoming an SPDX id.
- ``to_cyclonedx()`` returns a CycloneDX 1.5 JSON document (it was checked against the specification's
  ``bom-1.5.schema.json`` when written): Ampgate is ``metadata.component``, every other distribution a
  ``library`` with a ``pkg:pypi`` purl that is also its ``bom-ref``.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import re
import tomllib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageMetadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gateway

SELF = "ampgate"
SPEC_VERSION = "1.5"
UNKNOWN = "unknown"

# SPDX identifiers we recognise in a ``License`` field or a classifier (all in the SPDX license list that
# CycloneDX 1.5's schema enumerates). An unlisted value is kept as a license name, which is always valid.
SPDX_IDS = frozenset({
    "0BSD", "AFL-3.0", "AGPL-3.0-only", "AGPL-3.0-or-later", "Apache-1.1", "Apache-2.0", "Artistic-2.0",
    "BSD-2-Clause", "BSD-3-Clause", "BSL-1.0", "CC0-1.0", "CDDL-1.0", "EPL-1.0", "EPL-2.0", "EUPL-1.2",
    "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later", "HPND", "ISC",
    "LGPL-2.0-or-later", "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only", "LGPL-3.0-or-later", "MIT",
    "MIT-0", "MIT-CMU", "MPL-1.1", "MPL-2.0", "PSF-2.0", "Python-2.0", "Unlicense", "Zlib", "ZPL-2.1",
})
# Spellings seen in ``License`` fields that name exactly one SPDX license.
_LICENSE_ALIASES = {
    "apache 2.0": "Apache-2.0", "apache 2": "Apache-2.0", "apache-2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0", "apache license, version 2.0": "Apache-2.0",
    "apache software license 2.0": "Apache-2.0", "mit license": "MIT", "the mit license": "MIT",
    "bsd-3": "BSD-3-Clause", "new bsd": "BSD-3-Clause", "bsd 3-clause": "BSD-3-Clause",
    "bsd-2": "BSD-2-Clause", "isc license": "ISC", "mpl 2.0": "MPL-2.0", "mpl-2": "MPL-2.0",
}
# Trove classifiers that name one SPDX license without doubt. "Apache Software License" and "BSD License"
# do not say which version or variant, so they are kept as names.
_CLASSIFIER_IDS = {
    "MIT License": "MIT",
    "MIT No Attribution License (MIT-0)": "MIT-0",
    "ISC License (ISCL)": "ISC",
    "Python Software Foundation License": "PSF-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Mozilla Public License 1.1 (MPL 1.1)": "MPL-1.1",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "GNU Affero General Public License v3": "AGPL-3.0-only",
    "GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "Eclipse Public License 1.0 (EPL-1.0)": "EPL-1.0",
    "Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "The Unlicense (Unlicense)": "Unlicense",
    "zlib/libpng License": "Zlib",
    "Historical Permission Notice and Disclaimer (HPND)": "HPND",
    "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}
# Classifier segments that qualify a license rather than name one ("License :: OSI Approved :: MIT License").
_NOT_A_LICENSE = frozenset({"OSI Approved", "DFSG approved"})
# A ``License`` field longer than this, or on several lines, is the license text itself, not its name.
MAX_LICENSE_NAME_CHARS = 80

_NAME_RE = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_MARKER_RE = re.compile(r"\bextra\s*==")
_EXPRESSION_SPLIT_RE = re.compile(r"\s+(?:AND|OR|WITH)\s+|[()]")


def normalise_name(name: str) -> str:
    """The PEP 503 normalised project name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def purl(name: str, version: str) -> str:
    """The package URL of a PyPI distribution (purl spec: pypi names are lower case with '-')."""
    return f"pkg:pypi/{normalise_name(name)}@{quote(version, safe='')}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Component:
    name: str  # as the distribution spells it
    version: str
    licenses: tuple[str, ...] = ()  # SPDX ids where certain, else license names; empty with an expression
    license_expression: str | None = None  # an SPDX expression (License-Expression, or a License field)
    summary: str = ""
    direct: bool = False  # named in Ampgate's own requirements

    @property
    def license(self) -> str:
        """For people: the expression, the licenses joined by ', ', or ``unknown``."""
        return self.license_expression or ", ".join(self.licenses) or UNKNOWN

    @property
    def purl(self) -> str:
        return purl(self.name, self.version)


# -- reading the environment ----------------------------------------------------------------------------------


def _is_spdx_expression(text: str) -> bool:
    tokens = [t.strip() for t in _EXPRESSION_SPLIT_RE.split(text) if t and t.strip()]
    return bool(tokens) and all(t in SPDX_IDS or t.endswith("-exception") for t in tokens)


def _license_field(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if not text or text.upper() == UNKNOWN.upper() or "\n" in text or len(text) > MAX_LICENSE_NAME_CHARS:
        return None
    return _LICENSE_ALIASES.get(text.lower(), text)


def _classifier_licenses(classifiers: Iterable[str]) -> tuple[str, ...]:
    found: list[str] = []
    for classifier in classifiers:
        parts = [p.strip() for p in classifier.split("::")]
        if parts[0] != "License" or len(parts) < 2 or parts[-1] in _NOT_A_LICENSE:
            continue
        name = _CLASSIFIER_IDS.get(parts[-1], parts[-1])
        if name not in found:
            found.append(name)
    return tuple(found)


def _field(metadata: PackageMetadata, name: str) -> str | None:
    # get_all, not get or []: neither is part of the PackageMetadata protocol, and [] warns when missing.
    values = metadata.get_all(name)
    return str(values[0]) if values else None


def license_of(metadata: PackageMetadata) -> tuple[tuple[str, ...], str | None]:
    """``(licenses, expression)`` from a distribution's metadata, in the order the module docstring gives."""
    expression = (_field(metadata, "License-Expression") or "").strip()
    if expression:
        return (), expression
    field = _license_field(_field(metadata, "License"))
    if field is not None:
        if field not in SPDX_IDS and _is_spdx_expression(field):
            return (), field
        return (field,), None
    return _classifier_licenses(metadata.get_all("Classifier") or ()), None


def requirement_names(requirements: Iterable[str]) -> frozenset[str]:
    """Normalised names of requirements that apply without extras (``pytest; extra == "test"`` is left out)."""
    names = set()
    for requirement in requirements:
        _, _, marker = requirement.partition(";")
        if _EXTRA_MARKER_RE.search(marker):
            continue
        match = _NAME_RE.match(requirement)
        if match:
            names.add(normalise_name(match.group(1)))
    return frozenset(names)


def direct_requirements() -> frozenset[str]:
    """What Ampgate requires directly: its installed metadata, else ``pyproject.toml`` in a source checkout."""
    try:
        return requirement_names(importlib.metadata.requires(SELF) or ())
    except importlib.metadata.PackageNotFoundError:
        pass
    pyproject = Path(gateway.__file__).resolve().parents[1] / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return frozenset()
    return requirement_names(project.get("dependencies", ()))


def components() -> list[Component]:
    """Every distribution installed in the running environment, once each, sorted by normalised name."""
    direct = direct_requirements()
    seen: dict[str, Component] = {}
    for dist in importlib.metadata.distributions():
        metadata = dist.metadata
        name = _field(metadata, "Name")
        if not name:
            continue  # a broken install without metadata: nothing to name it by
        key = normalise_name(name)
        if key in seen:
            continue
        licenses, expression = license_of(metadata)
        seen[key] = Component(
            name=name, version=dist.version or UNKNOWN, licenses=licenses, license_expression=expression,
            summary=(_field(metadata, "Summary") or "").strip(), direct=key in direct,
        )
    return [seen[key] for key in sorted(seen)]


# -- CycloneDX ------------------------------------------------------------------------------------------------


def _cyclonedx_licenses(component: Component) -> list[dict[str, Any]]:
    if component.license_expression:
        return [{"expression": component.license_expression}]
    return [
        {"license": {"id": name} if name in SPDX_IDS else {"name": name}} for name in component.licenses
    ]


def _cyclonedx_component(component: Component, kind: str) -> dict[str, Any]:
    ref = component.purl
    entry: dict[str, Any] = {"type": kind, "bom-ref": ref, "name": component.name, "version": component.version}
    if component.summary:
        entry["description"] = component.summary
    licenses = _cyclonedx_licenses(component)
    if licenses:
        entry["licenses"] = licenses
    entry["purl"] = ref
    return entry


def to_cyclonedx(
    items: Sequence[Component], *, serial_number: str | None = None, timestamp: dt.datetime | None = None
) -> dict[str, Any]:
    """A CycloneDX 1.5 BOM of ``items``; Ampgate itself (from ``items`` if listed) is the described component.

    ``serial_number`` (a ``urn:uuid:``) and ``timestamp`` default to a random UUID and now; pass them to
    make the output reproducible.
    """
    own = next((c for c in items if normalise_name(c.name) == SELF), None)
    if own is None:
        own = Component(name=SELF, version=gateway.__version__)
    others = [c for c in items if normalise_name(c.name) != SELF]
    when = (timestamp or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    root = _cyclonedx_component(own, "application")
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": serial_number or uuid.uuid4().urn,
        "version": 1,
        "metadata": {
            "timestamp": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "tools": {"components": [{"type": "application", "name": SELF, "version": gateway.__version__}]},
            "component": root,
        },
        "components": [_cyclonedx_component(c, "library") for c in others],
        # Only the edges we know: Ampgate's direct requirements. Their own dependencies are not resolved here.
        "dependencies": [
            {"ref": root["bom-ref"], "dependsOn": [c.purl for c in others if c.direct]},
        ],
    }
