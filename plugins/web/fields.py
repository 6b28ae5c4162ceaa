"""What a service expects, read from its voluptuous schema, so the console can draw a form for any service.

Contract (pure, best effort):
- ``service_fields(schema)`` lists the top-level keys with whether they are required, a default, a type
  (``number``, ``integer``, ``boolean``, ``string`` or ``any``) and choices when the validator is ``vol.In``.
  A validator it cannot read is ``any``; the service's own schema still validates what is sent.
- ``form_value(field, text)`` turns a form's text into that type; what cannot be converted is passed on as
  text for the service schema to refuse with its own message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

_BY_TYPE: dict[Any, str] = {float: "number", int: "integer", bool: "boolean", str: "string"}
_BY_NAME = {"boolean": "boolean", "port": "integer", "duration": "number", "string": "string", "secret": "string"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    name: str
    required: bool
    type: str
    default: Any = None
    choices: tuple[Any, ...] = ()
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "required": self.required, "type": self.type, "default": self.default,
                "choices": list(self.choices), "description": self.description}


def _kind(validator: Any) -> tuple[str, tuple[Any, ...]]:
    if validator in _BY_TYPE:
        return _BY_TYPE[validator], ()
    if isinstance(validator, vol.Coerce):
        return _BY_TYPE.get(validator.type, "any"), ()
    if isinstance(validator, vol.In):
        container: Any = validator.container
        try:
            choices = tuple(container)
        except TypeError:
            choices = ()
        return "string" if all(isinstance(c, str) for c in choices) else "any", choices
    if isinstance(validator, vol.All) and validator.validators:
        for inner in validator.validators:
            kind, choices = _kind(inner)
            if kind != "any":
                return kind, choices
        return "any", ()
    if isinstance(validator, vol.Any):
        return "any", ()
    return _BY_NAME.get(getattr(validator, "__name__", ""), "any"), ()


def service_fields(schema: vol.Schema | Mapping[Any, Any] | None) -> list[Field]:
    raw = schema.schema if isinstance(schema, vol.Schema) else schema
    if not isinstance(raw, Mapping):
        return []
    out: list[Field] = []
    for key, validator in raw.items():
        name = str(key.schema) if isinstance(key, vol.Marker) else str(key)
        required = isinstance(key, vol.Required)
        default = None
        factory: Any = getattr(key, "default", vol.UNDEFINED)
        if isinstance(key, vol.Optional | vol.Required) and factory is not vol.UNDEFINED:
            try:
                default = factory()
            except Exception:  # a default factory that needs context: show none
                default = None
        kind, choices = _kind(validator)
        description = str(getattr(key, "description", "") or "")
        out.append(Field(name=name, required=required, type=kind, default=default, choices=choices,
                         description=description))
    return out


def form_value(field: Field, text: str | None) -> tuple[bool, Any]:
    """(present, value) for one form input; absent when an optional field was left empty."""
    if field.type == "boolean":
        return True, text in ("on", "true", "1", "yes")
    if text is None or text == "":
        return False, None
    text = text.strip()
    try:
        if field.type == "integer":
            return True, int(text)
        if field.type == "number":
            return True, float(text)
        if field.type == "any" and text[:1] in "[{0123456789-tfn\"":
            return True, json.loads(text)
    except ValueError:
        pass
    return True, text
