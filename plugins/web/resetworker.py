"""Runs the factory reset that the web console asked for, in a child process of the stopping gateway.

``python -m plugins.web.resetworker <data_dir> <context json>``. The console's request handler cannot erase
the data directory itself: the gateway is using it. So it records the request in the audit log, registers an
exit handler and stops the gateway; at exit (plugins stopped, storage closed, pid file removed) that handler
runs this module and waits for it. A child process, because the interpreter's exit handlers can no longer
start the storage thread that ``gateway.security.reset`` needs; waited for, so that a service manager or a
container that stops once the gateway exits does not kill the erase half-way.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gateway.context import Context, Role
from gateway.security.reset import ResetRefused, factory_reset


def main(argv: list[str]) -> int:
    data_dir, raw = Path(argv[0]), json.loads(argv[1])
    context = Context(origin=str(raw.get("origin", "web")), principal=raw.get("principal"),
                      role=Role[str(raw.get("role", "admin")).upper()], address=raw.get("address"))
    try:
        report = factory_reset(data_dir, context=context)
    except ResetRefused as err:
        print(f"factory reset refused: {err}", file=sys.stderr)
        return 1
    print(f"factory reset done: {len(report.files)} files and {report.rows} database rows erased in {data_dir}"
          + (f"; could not erase: {', '.join(report.errors)}" if report.errors else ""), file=sys.stderr)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
