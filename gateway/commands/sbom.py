"""``ampgate sbom``: list every component the gateway runs (name, version, license, direct requirement).

``--format cyclonedx`` prints a CycloneDX 1.5 JSON document instead of the table; ``--output FILE`` writes
either to FILE. Exit codes: 0 listed or written; 1 the file could not be written.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway.security.sbom import Component, components, to_cyclonedx

FORMATS = ("table", "cyclonedx")
EXIT_WRITE_FAILED = 1
# The table stays readable on a terminal; the full text is in the CycloneDX output.
MAX_LICENSE_COLUMN = 48


def register(sub: Any) -> None:
    parser = sub.add_parser("sbom", help="list the software components (SBOM); CycloneDX with --format")
    parser.add_argument("--format", choices=FORMATS, default="table", help="table (default) or cyclonedx JSON")
    parser.add_argument("--output", "-o", default=None, metavar="FILE", help="write to FILE instead of stdout")
    parser.set_defaults(func=handle)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(items: list[Component]) -> str:
    rows = [(c.name, c.version, _shorten(c.license, MAX_LICENSE_COLUMN), "yes" if c.direct else "") for c in items]
    header = ("NAME", "VERSION", "LICENSE", "DIRECT")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    direct = sum(1 for c in items if c.direct)
    lines.append(f"\n{len(items)} components, {direct} required directly by ampgate.")
    return "\n".join(lines) + "\n"


def handle(args: argparse.Namespace) -> int:
    items = components()
    if args.format == "cyclonedx":
        text = json.dumps(to_cyclonedx(items), indent=2, ensure_ascii=False) + "\n"
    else:
        text = table(items)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as err:
        print(f"error: cannot write {args.output}: {err.strerror or err}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    print(f"Wrote {len(items)} components ({args.format}) to {args.output}.")
    return 0
