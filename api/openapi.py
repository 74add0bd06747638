"""The OpenAPI document as a user of the API needs it: every body's schema, the API-key schemes, and every error a
route can answer with, each in the one error shape ``api.errors`` writes.

Routes that parse their own bodies (strictly, with clear errors) declare them with ``request_body`` or ``text_body``;
``install`` infers the errors every route shares from what the route depends on, and a route adds its own with
``error_responses``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel

from ragpress.api import auth
from ragpress.api.dependencies import rate_limited
from ragpress.api.schemas import ErrorOut

_BODIES: dict[str, type[BaseModel]] = {}
REF = "#/components/schemas/{model}"
ERROR_CONTENT = {"application/json": {"schema": {"$ref": REF.format(model=ErrorOut.__name__)}}}
# FastAPI's own 422 body ({"detail": [...]}), which this API never sends.
_FASTAPI_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": (
        "An API key (`ragpress keys create --tenant NAME`) as `Authorization: Bearer <key>`. A server on localhost "
        "with no key created yet serves without one.")},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "The same API key, in the X-API-Key header instead."},
}
SECURITY = [{"bearer": []}, {"apiKey": []}]
ACTING_TENANT = {"name": "X-Ragpress-Tenant", "in": "header", "required": False, "schema": {"type": "string"},
                 "description": "Admin keys only: the tenant to act for (required with an admin key)."}

WHY = {
    400: "The body is empty, not UTF-8, not valid JSON or nested too deep; or an admin key names no tenant "
         "(`tenant_required`).",
    401: "No API key, or an unknown or revoked one (`unauthorized`).",
    403: "The route needs an admin key (`forbidden`).",
    404: "What the path names does not exist for this tenant (`not_found`).",
    409: "The request conflicts with what exists (the code says what).",
    413: "The body, or a document in it, is over the server's size limit.",
    415: "The body's content type is not one this route reads.",
    422: "The request is well-formed but invalid; the message names the field and what to send "
         "(`invalid_request`; `invalid_pipeline` lists every problem).",
    429: "Too many requests for this key (`rate_limited`); retry after Retry-After seconds.",
    502: "The remote generator the pipeline uses failed or is unreachable (`generator_unavailable`).",
    503: "The server is at capacity (`overloaded`, retry after Retry-After seconds), or a model or the index is "
         "unavailable (`model_unavailable`, `index_unavailable`).",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait (when overloaded)."}},
}


def request_body(model: type[BaseModel], content_type: str = "application/json") -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` with ``errors.parse_body``: FastAPI cannot see such a
    body, so the route declares it here and ``install`` adds its schema to the document's components."""
    _BODIES[model.__name__] = model
    return {"requestBody": {"required": True, "content": {
        content_type: {"schema": {"$ref": REF.format(model=model.__name__)}}}}}


def text_body(content_type: str, description: str) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its body as text (a pipeline's YAML)."""
    return {"requestBody": {"required": True, "description": description,
                            "content": {content_type: {"schema": {"type": "string"}}}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for the errors of a route that ``install`` cannot infer (409, 415, 502, 503, ...)."""
    return {status: {"description": WHY[status]} for status in statuses}


def install(app: FastAPI) -> None:
    """Build the app's OpenAPI document once, when first asked for (every route is included by then)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            components = document.setdefault("components", {})
            _add_schemas(components.setdefault("schemas", {}))
            components["securitySchemes"] = SECURITY_SCHEMES
            for route in iter_route_contexts(app.routes):  # included routers' routes, with their dependencies
                if isinstance(route.original_route, APIRoute) and route.include_in_schema:
                    for method in route.methods or ():
                        _describe(route, document["paths"][route.path_format][method.lower()])
            _drop_unused(components["schemas"], document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_schemas(schemas: dict[str, Any]) -> None:
    for model in (*_BODIES.values(), ErrorOut):
        schema = model.model_json_schema(ref_template=REF)
        for name, nested in schema.pop("$defs", {}).items():
            schemas.setdefault(name, nested)
        schemas.setdefault(model.__name__, schema)


def _describe(route: RouteContext, operation: dict[str, Any]) -> None:
    """Add the security and the errors the route shares with others, then give every error the error schema."""
    calls = set(_calls(route.dependant))
    responses = operation.setdefault("responses", {})
    statuses = set(_shared_errors(route, operation, calls))
    if route.path_format.startswith("/v1/"):
        operation["security"] = SECURITY
    if auth.tenant in calls:
        operation.setdefault("parameters", []).append(ACTING_TENANT)
    for status in statuses:
        responses.setdefault(str(status), {"description": WHY[status]})
    if "422" in responses:  # FastAPI's own 422 ({"detail": [...]}) is not what this API sends
        responses["422"] = {"description": WHY[422]}
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            response.setdefault("content", ERROR_CONTENT)
            if int(status) in _HEADERS:
                response.setdefault("headers", _HEADERS[int(status)])
    operation["responses"] = dict(sorted(responses.items()))


def _shared_errors(route: RouteContext, operation: dict[str, Any], calls: set[Callable[..., Any]]) -> Iterator[int]:
    if route.path_format.startswith("/v1/"):
        yield 401
    if auth.admin in calls:
        yield 403
    if auth.tenant in calls:
        yield 400  # an admin key that names no tenant
    if rate_limited in calls:
        yield 429
    if "requestBody" in operation:
        yield from (400, 413, 422)
    if operation.get("parameters"):
        yield 422
    # A path parameter names something that must exist, except where PUT creates or replaces it.
    if "{" in route.path_format and "PUT" not in route.methods:
        yield 404


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _drop_unused(schemas: dict[str, Any], document: dict[str, Any]) -> None:
    for name in _FASTAPI_ERROR_SCHEMAS:  # HTTPValidationError first: it is what refers to ValidationError
        if f'"{REF.format(model=name)}"' not in json.dumps(document):
            schemas.pop(name, None)
