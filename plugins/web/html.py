"""Escaping HTML by default: the only way the console builds markup.

Contract (pure):
- ``Markup`` is text already known to be safe HTML. ``esc`` turns anything else into Markup by escaping
  ``& < > " '``; Markup passes through unchanged.
- ``h(template, **values)`` formats a template with ``{name}`` fields and escapes every value that is not
  Markup, so a value from a device, a user or the database can never become markup or leave an attribute.
  Templates are literals in our code; never build one from data.
- ``join`` concatenates Markup pieces (escaping any plain string among them).
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable
from typing import Any


class Markup(str):
    """Trusted HTML. Only templates in our code and ``esc``/``h``/``join`` results are Markup."""

    __slots__ = ()

    def __html__(self) -> str:
        return self


def esc(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(html.escape(str(value), quote=True))


class _Escaping(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, Markup):
            return value
        return esc(format(value, format_spec) if format_spec else value)


_FORMATTER = _Escaping()


def h(template: str, /, **values: Any) -> Markup:
    return Markup(_FORMATTER.vformat(template, (), values))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    return Markup(esc(sep).join(esc(p) for p in parts))


def attrs(**values: Any) -> Markup:
    """HTML attributes from keywords (``data_entity`` -> ``data-entity``); False/None are left out, True is bare."""
    out: list[str] = []
    for name, value in values.items():
        key = name.rstrip("_").replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            out.append(key)
        else:
            out.append(f'{key}="{esc(value)}"')
    return Markup((" " + " ".join(out)) if out else "")
