"""The request checks of the API, written as the JSON schemas its OpenAPI document publishes.

One schema is both the documentation (``openapi.py`` copies it into ``/api/openapi.json``) and the check
(``validate``), so the published API and the accepted input cannot drift apart.

Contract:
- ``validate(schema, value)`` returns ``value`` (numbers coerced only where the schema says ``number`` and an
  integer came) or raises ``SchemaError`` whose message names the field and the rule; it never raises
  anything else, whatever JSON value it is given.
- ``from_query(schema, texts)`` turns query-string values into the schema's type, then validates.
- The subset understood: ``type`` (object, string, integer, number, boolean, array), ``properties``,
  ``required``, ``additionalProperties`` (bool or a schema), ``minLength``/``maxLength``, ``pattern``,
  ``enum``, ``minimum``/``maximum``, ``items``, ``maxItems``, ``maxProperties``, ``nullable`` (OpenAPI 3.0).
  Any other keyword is a programming error, caught by the tests that walk every route's schema.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Final

KNOWN_KEYWORDS: Final = frozenset({
    "type", "properties", "required", "additionalProperties", "minLength", "maxLength", "pattern", "enum",
    "minimum", "maximum", "items", "maxItems", "maxProperties", "nullable", "description", "format", "example",
    "title", "default", "readOnly",
})
# Nesting we follow before giving up: our request bodies are two levels deep; service data a few more.
MAX_DEPTH: Final = 16


class SchemaError(ValueError):
    """``value`` does not match; ``path`` is where (``data.limit_a``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def validate(schema: dict[str, Any], value: Any, path: str = "body", _depth: int = 0) -> Any:
    if _depth > MAX_DEPTH:
        raise SchemaError(path, "nested too deeply")
    if value is None:
        if schema.get("nullable") or not schema.get("type"):
            return None
        raise SchemaError(path, f"must be {schema['type']}, not null")
    kind = schema.get("type")
    actual = _type_name(value)
    if kind == "number" and actual == "integer":
        value, actual = float(value), "number"
    if kind is not None and actual != kind:
        raise SchemaError(path, f"must be {kind}, not {actual}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(path, f"must be one of {', '.join(map(str, schema['enum']))}")
    if actual == "string":
        _string(schema, value, path)
    elif actual in ("integer", "number"):
        _number(schema, value, path)
    elif actual == "array":
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise SchemaError(path, f"at most {schema['maxItems']} items")
        items = schema.get("items", {})
        value = [validate(items, item, f"{path}[{i}]", _depth + 1) for i, item in enumerate(value)]
    elif actual == "object":
        value = _object(schema, value, path, _depth)
    return value


def _string(schema: dict[str, Any], value: str, path: str) -> None:
    if len(value) < schema.get("minLength", 0):
        raise SchemaError(path, f"at least {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise SchemaError(path, f"at most {schema['maxLength']} characters")
    pattern = schema.get("pattern")
    if pattern is not None and re.search(pattern, value) is None:
        raise SchemaError(path, f"must match {pattern}")


def _number(schema: dict[str, Any], value: float, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise SchemaError(path, "must be a finite number")
    if "minimum" in schema and value < schema["minimum"]:
        raise SchemaError(path, f"must be at least {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise SchemaError(path, f"must be at most {schema['maximum']}")


def _object(schema: dict[str, Any], value: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        raise SchemaError(path, f"at most {schema['maxProperties']} fields")
    properties: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            raise SchemaError(f"{path}.{name}", "required")
    extra = schema.get("additionalProperties", True)
    out: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in properties:
            out[key] = validate(properties[key], item, where, depth + 1)
        elif extra is False:
            raise SchemaError(where, "unknown field")
        elif isinstance(extra, dict):
            out[key] = validate(extra, item, where, depth + 1)
        else:
            out[key] = item
    return out


def _coerce(schema: dict[str, Any], text: str, path: str) -> Any:
    kind = schema.get("type")
    if kind == "integer":
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", text):
            raise SchemaError(path, "must be an integer")
        return int(text)
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            raise SchemaError(path, "must be a number") from None
    if kind == "boolean":
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise SchemaError(path, "must be true or false")
    return text


def from_query(schema: dict[str, Any], texts: Sequence[str], path: str) -> Any:
    """A query parameter's value(s) as the schema's type: an array takes every occurrence, others one."""
    if schema.get("type") == "array":
        items = schema.get("items", {})
        return validate(schema, [_coerce(items, t, path) for t in texts], path)
    if len(texts) > 1:
        raise SchemaError(path, "given more than once")
    return validate(schema, _coerce(schema, texts[0], path), path)


def unknown_keywords(schema: Any) -> set[str]:
    """Keywords ``validate`` does not understand, anywhere in ``schema`` (used by the tests)."""
    found: set[str] = set()
    if isinstance(schema, dict):
        found |= set(schema) - KNOWN_KEYWORDS
        for key in ("items",):
            if key in schema:
                found |= unknown_keywords(schema[key])
        for sub in schema.get("properties", {}).values():
            found |= unknown_keywords(sub)
        if isinstance(schema.get("additionalProperties"), dict):
            found |= unknown_keywords(schema["additionalProperties"])
    return found
