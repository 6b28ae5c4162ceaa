"""Turn voluptuous errors into ``config.yaml:12: ocpp.port: expected ..., got 'abc' — fix: ...``.

Every error of a validation is reported at once, each with the file and line of the offending key (or of
the mapping that lacks a required key), and unknown keys suggest the nearest known one.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import voluptuous as vol

from gateway.config.validation import FIX
from gateway.config.yaml_loader import Mark, NodeDict, NodeList


def locate(root: Any, path: Sequence[Any]) -> tuple[Mark | None, Any, bool]:
    """Walk ``path`` through the loaded YAML: (mark of the deepest key reached, its value, reached all)."""
    mark = getattr(root, "mark", None)
    node = root
    for part in path:
        if isinstance(node, NodeDict) and str(part) in node:
            mark = node.key_marks.get(str(part), mark)
            node = node[str(part)]
        elif isinstance(node, NodeList) and isinstance(part, int) and 0 <= part < len(node):
            mark = node.item_marks[part]
            node = node[part]
        else:
            return mark, None, False
    return mark, node, True


def schema_keys(schema: Any, path: Sequence[Any]) -> list[str]:
    """The keys a voluptuous schema allows at ``path`` (for "did you mean" suggestions)."""
    node = schema
    for part in [*path, None]:
        while True:
            if isinstance(node, vol.Schema):
                node = node.schema
            elif isinstance(node, vol.All | vol.Any):
                node = next((v for v in node.validators if isinstance(v, dict | vol.Schema)), None)
            else:
                break
        if part is None:
            break
        if isinstance(node, dict):
            node = next((v for k, v in node.items() if str(getattr(k, "schema", k)) == str(part)), None)
        elif isinstance(node, list) and node:
            node = node[0]
        else:
            return []
    if isinstance(node, dict):
        return [str(getattr(k, "schema", k)) for k in node]
    return []


def format_error(
    err: vol.Invalid, root: Any, schema: Any, prefix: Sequence[str], default_mark: Mark | None
) -> str:
    path = list(err.path)
    mark, value, found = locate(root, path)
    dotted = ".".join([*prefix, *(str(p) for p in path)]) or "(top)"
    msg = str(err.msg)
    if msg == "extra keys not allowed":
        key = str(path[-1]) if path else "?"
        known = schema_keys(schema, path[:-1])
        near = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
        hint = f"did you mean '{near[0]}'?" if near else "remove it"
        choices = f" (known keys: {', '.join(sorted(known))})" if known else ""
        msg = f"unknown key '{key}'{FIX}{hint}{choices}"
    elif msg == "required key not provided":
        msg = f"required key missing{FIX}add '{path[-1]}: ...' here"
        # Point at the key that holds the incomplete mapping, not at its first child.
        mark = locate(root, path[:-1])[0] if len(path) > 1 else default_mark
    elif FIX not in msg:
        got = f", got {value!r}" if found and not isinstance(value, dict | list) else ""
        msg = f"{msg.replace(' for dictionary value', '')}{got}{FIX}see docs/configuration.md for '{dotted}'"
    where = mark or default_mark
    return f"{where}: {dotted}: {msg}" if where else f"{dotted}: {msg}"


def format_invalid(
    err: vol.Invalid, root: Any, schema: Any, prefix: Sequence[str] = (), default_mark: Mark | None = None
) -> list[str]:
    errors = err.errors if isinstance(err, vol.MultipleInvalid) else [err]
    return [format_error(e, root, schema, prefix, default_mark) for e in errors]
