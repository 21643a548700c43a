"""The OpenAPI 3.1 document, assembled from the operations table and the response models' JSON Schemas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api import csv_export, models, params
from api.endpoints import Operation

REF = "#/components/schemas/{model}"
_ERROR_MODELS: tuple[type[BaseModel], ...] = (models.Detail, models.ParameterErrors)


def _query_parameters(groups: Sequence[str], topic: str) -> list[dict[str, Any]]:
    specs: dict[str, tuple[dict[str, Any], str]] = {}
    if "filters" in groups:
        specs.update(params.FILTER_PARAMS)
    if "conversation_filters" in groups:
        specs.update(params.CONVERSATION_FILTER_PARAMS)
    if "feedback_filters" in groups:
        specs.update(params.FEEDBACK_FILTER_PARAMS)
    if "ordering" in groups:
        specs["o"] = params.ORDERING_PARAM
    if "conversation_ordering" in groups:
        specs["o"] = params.CONVERSATION_ORDERING_PARAM
    if "feedback_ordering" in groups:
        specs["o"] = params.FEEDBACK_ORDERING_PARAM
    if "pagination" in groups:
        specs.update(params.PAGINATION_PARAMS)
    if "window" in groups:
        specs["window_days"] = params.WINDOW_PARAM
    if "position" in groups:
        specs[params.MIN_POSITION] = params.min_position_param(topic)
    if "format" in groups:
        specs["format"] = csv_export.FORMAT_PARAM
    out = []
    for name, (schema, description) in specs.items():
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": description,
            # As in the reference (django-filter), an empty value means the parameter was not given.
            "allowEmptyValue": True,
        }
        if schema.get("type") == "array":
            parameter.update(style="form", explode=True)
        out.append(parameter)
    return out


POSITION_HEADER = {
    params.POSITION_HEADER: {
        "description": "the read-model position the answer was read from (VERSION.TOPIC_TAG.OFFSET per partition);"
        " send it back as min_position to never read an older one",
        "schema": {"type": "string"},
    }
}


def _json(ref: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": ref}}


def build(operations: Sequence[Operation], *, title: str, version: str, topic: str) -> dict[str, Any]:
    """The document of a server folding `topic` (its name shapes the read-model position tokens)."""
    response_models = {op.response for op in operations if op.response is not None}
    all_models = sorted({*response_models, *_ERROR_MODELS}, key=lambda m: m.__name__)
    refs, definitions = models_json_schema([(m, "serialization") for m in all_models], ref_template=REF)

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "serialization")]

    detail = {"content": _json(ref(models.Detail))}
    paths: dict[str, Any] = {}
    for op in operations:
        if op.response is None:
            is_json = op.media_type == "application/json"
            body_schema: dict[str, Any] = {"type": "object"} if is_json else {"type": "string"}
        else:
            body_schema = {"type": "array", "items": ref(op.response)} if op.many else ref(op.response)
        ok: dict[str, Any] = {"description": op.summary, "content": {op.media_type: {"schema": body_schema}}}
        if "format" in op.query:
            # One header line, then one line per row; the columns are the JSON fields, feedback flattened.
            ok["content"]["text/csv"] = {"schema": {"type": "string"}}
        ok["headers"] = dict(POSITION_HEADER)
        if op.paginated:
            ok["headers"] |= {
                "X-Result-Count": {"description": "rows in the whole result", "schema": {"type": "integer"}},
                "Link": {
                    "description": "RFC 8288 links: first, prev, next, last (only on paginated responses)",
                    "schema": {"type": "string"},
                },
            }
        responses: dict[str, Any] = {"200": ok}
        for status, description in op.extra_statuses.items():
            responses[str(status)] = {"description": description, "content": {op.media_type: {"schema": body_schema}}}
        if "position" in op.query:
            responses["503"] = {
                "description": "this replica did not reach min_position in time (or the read model is being rebuilt)",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}, **POSITION_HEADER},
                **detail,
            }
        if op.query:
            responses["400"] = {
                "description": "bad query parameters, one key per parameter",
                "content": _json(ref(models.ParameterErrors)),
            }
        if op.authenticated:
            responses["401"] = {
                "description": "missing or unknown token",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                **detail,
            }
            responses["403"] = {"description": "the token's role may not read analytics", **detail}
        if op.path_params or "pagination" in op.query:
            responses["404"] = {"description": "no such object, or a page past the last", **detail}
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": schema} for name, schema in op.path_params.items()
        ]
        operation: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "parameters": [*parameters, *_query_parameters(op.query, topic)],
            "responses": responses,
            "security": [{"TokenAuth": []}] if op.authenticated else [],
        }
        paths[op.path] = {"get": operation}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "TokenAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`Token <token>`; roles staff and support may read",
                }
            },
        },
    }
