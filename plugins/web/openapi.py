"""The OpenAPI 3.0 document of the API, built from the same ``RouteSpec`` list the server registers.

Contract: pure; one operation per API route with its parameters, request body, success response and the
error responses every route can give (400 bad input, 401 no or bad credentials, 403 role or CSRF, 429
throttled) plus the ones it declares. Both security schemes are listed: the bearer token for
integrations and the console's session cookie (which also needs the ``X-CSRF-Token`` header on changes).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from gateway import __version__

from .const import CSRF_HEADER, SCOPES, SESSION_COOKIE_TLS
from .routing import RouteSpec

COMMON_ERRORS = (400, 401, 403)
REASONS = {400: "Bad request: the message says which field and why", 401: "No valid token or session",
           403: "Role or scope too low, password change pending, or CSRF token missing",
           404: "Not found", 409: "Already exists", 413: "Body too large", 429: "Too many requests",
           503: "Too many live streams", 504: "The service did not answer in time"}
ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _operation(spec: RouteSpec, error_schema: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": spec.operation_id,
        "summary": spec.summary,
        "tags": [spec.tag] if spec.tag else [],
        "x-role": spec.role.name.lower() if spec.role is not None else "public",
    }
    if spec.description:
        op["description"] = spec.description
    if spec.params:
        op["parameters"] = []
        for param in spec.params:
            entry: dict[str, Any] = {"name": param.name, "in": param.where, "required": param.required,
                                     "schema": copy.deepcopy(param.schema)}
            if param.description:
                entry["description"] = param.description
            if param.schema.get("type") == "array":
                entry["style"], entry["explode"] = "form", True
            op["parameters"].append(entry)
    if spec.body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": copy.deepcopy(spec.body)}}}
    success: dict[str, Any] = {"description": "OK" if spec.status == 200 else "Created"}
    if spec.response is not None:
        success["content"] = {spec.content_type: {"schema": copy.deepcopy(spec.response)}}
    responses: dict[str, Any] = {str(spec.status): success}
    statuses = sorted({*COMMON_ERRORS, *spec.errors, *((413,) if spec.body is not None else ())})
    for status in statuses:
        responses[str(status)] = {"description": REASONS.get(status, "Error"),
                                  "content": {"application/json": {"schema": error_schema}}}
    op["responses"] = responses
    if spec.role is not None:
        scopes = [name for name, role in SCOPES.items() if role >= spec.role]
        op["security"] = [{"bearer": []}, {"session": []}]
        op["x-scopes"] = scopes
    else:
        op["security"] = []
    return op


def document(specs: Iterable[RouteSpec], *, title: str = "Ampgate API", server_url: str = "/") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        if not spec.api or not spec.published:
            continue
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec, ERROR_REF)
    from .api import ERROR

    return {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "version": __version__,
            "description": (
                "The Ampgate gateway's API. Authenticate with a long-lived access token "
                "(`Authorization: Bearer agt_...`) created by an administrator in the console. Scopes: "
                "`read` (viewer), `operate` (read and commands), `admin` (everything). Tokens are shown once "
                "and stored only as a hash; revoke them in the console or with DELETE /api/tokens/{id}."
            ),
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": {"Error": copy.deepcopy(ERROR)},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A long-lived access token; its scope caps the role"},
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE_TLS,
                            "description": f"The console's session; changes also need the {CSRF_HEADER} "
                                           "header"},
            },
        },
    }
