"""The OpenAPI 3 document, generated from the same pydantic models that validate requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from scheduler.web.inputs import MAX_ID


@dataclass
class Operation:
    method: str
    path: str  # OpenAPI style: /locations/{location}
    summary: str
    body: type[BaseModel] | None = None
    response: Any = None  # a model, or list[model]
    status: int = 200
    query: type[BaseModel] | None = None
    auth: bool = False
    errors: tuple[int, ...] = ()
    headers: tuple[str, ...] = ()
    content_type: str = "application/json"
    int_params: tuple[str, ...] = ()  # path parameters that are row ids (Flask's <int:...>)
    also: tuple[str, ...] = ()  # other media types of the same response (Accept), as text


@dataclass
class Registry:
    operations: list[Operation] = field(default_factory=list)

    def add(self, operation: Operation) -> None:
        self.operations.append(operation)

    def document(self, title: str, version: str, server: str) -> dict[str, Any]:
        models: set[type[BaseModel]] = {ErrorBody}
        for op in self.operations:
            for candidate in (op.body, op.query, _item(op.response)):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    models.add(candidate)
        ordered = sorted(models, key=lambda m: m.__name__)
        _, schemas = models_json_schema(
            [(m, "validation") for m in ordered], ref_template="#/components/schemas/{model}"
        )
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "servers": [{"url": server}],
            "paths": paths,
            "components": {
                "schemas": schemas.get("$defs", {}),
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
        }


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: dict[str, str] | None = None
    # A refused change that booked visits depend on (shift_in_use, staffing_in_use,
    # clinician_in_use, a refused block): the ids of those visits.
    appointments: list[int] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def _item(response: Any) -> Any:
    args = getattr(response, "__args__", None)
    return args[0] if args else response


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(op)}
    params: list[dict[str, Any]] = []
    for name in _path_params(op.path):
        kind: dict[str, Any] = _ID_SCHEMA if name in op.int_params else {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": kind})
    if op.query is not None:
        query_schema = op.query.model_json_schema()
        required = set(query_schema.get("required", []))
        for name, prop in query_schema.get("properties", {}).items():
            params.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    for header in op.headers:
        params.append(
            {"name": header, "in": "header", "required": False, "schema": {"type": "string"}}
        )
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    responses: dict[str, Any] = {}
    if op.content_type != "application/json":
        responses[str(op.status)] = {
            "description": "OK",
            "content": {op.content_type: {"schema": {"type": "string"}}},
        }
    elif op.response is None:
        responses[str(op.status)] = {"description": "OK"}
    else:
        item = _item(op.response)
        schema: dict[str, Any] = _ref(item)
        if item is not op.response:
            schema = {"type": "array", "items": schema}
        responses[str(op.status)] = {
            "description": "OK",
            "content": {
                "application/json": {"schema": schema},
                **{media: {"schema": {"type": "string"}} for media in op.also},
            },
        }
    for status in sorted({*op.errors, *_common_errors(op)}):
        responses[str(status)] = {
            "description": "Error",
            "content": {"application/json": {"schema": _ref(ErrorBody)}},
        }
    # Any operation: a rate limit (429) or an unreachable database (503), both saying when to
    # come back.
    for status, why in ((429, "Too many requests"), (503, "Briefly unavailable")):
        responses[str(status)] = {
            "description": why,
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
            "content": {"application/json": {"schema": _ref(ErrorBody)}},
        }
    out["responses"] = responses
    if op.auth:
        out["security"] = [{"bearer": []}]
    return out


# Ids are positive 32-bit integers; a larger one is simply not found (404).
_ID_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}


def _common_errors(op: Operation) -> set[int]:
    """Refused input, whatever the operation: 400 for unreadable input (malformed JSON, a
    control character in a parameter), 404 for a path naming nothing, 413 for a body over the
    size limit. (429 and 503 are added below with their Retry-After.)"""
    common = {400}
    if _path_params(op.path):
        common.add(404)
    if op.body is not None:
        common.add(413)
    return common


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _operation_id(op: Operation) -> str:
    words = [p.strip("{}") for p in op.path.split("/") if p]
    return op.method.lower() + "_" + "_".join(w.replace(".", "_") for w in words)
