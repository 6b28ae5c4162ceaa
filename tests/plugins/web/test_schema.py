"""The API's input checks: the JSON-schema subset, query coercion, and that every declared schema uses only
keywords the checker understands (so what the OpenAPI document promises is what is enforced)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.web import api, pages
from plugins.web.schema import SchemaError, from_query, unknown_keywords, validate

USER = api.obj({"username": {"type": "string", "pattern": api.USERNAME_RE},
                "role": {"type": "string", "enum": ["viewer", "admin"]},
                "limit": {"type": "number", "minimum": 0, "maximum": 10}}, ("username",))


def test_valid_and_coerced() -> None:
    assert validate(USER, {"username": "bob", "limit": 3}) == {"username": "bob", "limit": 3.0}


@pytest.mark.parametrize(("value", "where"), [
    ({}, "body.username: required"),
    ({"username": "bob", "extra": 1}, "body.extra: unknown field"),
    ({"username": "-bob"}, "body.username: must match"),
    ({"username": "bob", "role": "root"}, "body.role: must be one of"),
    ({"username": "bob", "limit": 11}, "body.limit: must be at most 10"),
    ({"username": "bob", "limit": True}, "body.limit: must be number, not boolean"),
    ({"username": "bob", "limit": float("nan")}, "body.limit: must be a finite number"),
    ([], "body: must be object, not array"),
    (None, "body: must be object, not null"),
])
def test_refusals_name_the_field(value: Any, where: str) -> None:
    with pytest.raises(SchemaError, match=where.replace("(", r"\(")):
        validate(USER, value)


def test_query_values() -> None:
    assert from_query({"type": "integer", "minimum": 1}, ["5"], "limit") == 5
    assert from_query({"type": "array", "items": {"type": "string"}}, ["a", "b"], "x") == ["a", "b"]
    with pytest.raises(SchemaError, match="must be an integer"):
        from_query({"type": "integer"}, ["5x"], "limit")
    with pytest.raises(SchemaError, match="more than once"):
        from_query({"type": "integer"}, ["1", "2"], "limit")


def test_every_declared_schema_is_understood() -> None:
    for spec in [*api.routes(), *pages.routes()]:
        for schema in [spec.body, spec.response, *(p.schema for p in spec.params)]:
            assert not unknown_keywords(schema or {}), (spec.method, spec.path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@given(json_values)
def test_validate_never_raises_anything_else(value: Any) -> None:
    """Contract: any JSON value against every request schema either passes or raises SchemaError."""
    for spec in api.routes():
        if spec.body is None:
            continue
        with contextlib.suppress(SchemaError):
            validate(spec.body, value)
