"""Every error leaves the API as JSON ``{error: {code, message}}`` with the right status, never a trace.

The OpenAPI document gives that shape as ``schemas.ErrorOut`` on every error response (``api.openapi``)."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragpress.base import strict_json
from ragpress.base.document_stores import IndexUnavailable
from ragpress.base.models import ModelError
from ragpress.generators.remote_generator import RemoteGeneratorError
from ragpress.pipelines.loader import PipelineInvalid
from ragpress.pipelines.query_pipeline import InvalidRequest
from ragpress.pipelines.registry import PipelineNotFound
from ragpress.service import NotFound

logger = logging.getLogger(__name__)
Model = TypeVar("Model", bound=BaseModel)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    body = _encodable({"error": {"code": code, "message": message, **extra}})
    return JSONResponse(body, status_code=status, headers=headers)


def _encodable(value: Any) -> Any:
    """``value`` with lone surrogates escaped: a message may quote what the caller sent (a dict key in a
    validation error's location), and one that no UTF-8 encoder can write would turn a 4xx into a 500."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(v) for v in value]
    return value


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for error in errors[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{location or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


async def parse_body(request: Request, model: type[Model]) -> Model:
    """Decode a JSON body strictly and within bounds (``ragpress.base.strict_json``): empty, bad UTF-8, bad or too
    deeply nested JSON is 400; numbers beyond 64 bits, lone surrogates and a body of the wrong shape are 422."""
    try:
        data = strict_json.loads(await request.body())
    except strict_json.JsonRefused as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", _validation_message(exc.errors())) from None


# Errors whose message is already written for the user: only the status and code differ.
_SIMPLE: dict[type[Exception], tuple[int, str]] = {
    NotFound: (404, "not_found"),
    InvalidRequest: (422, "invalid_request"),
    PipelineNotFound: (404, "not_found"),
    ModelError: (503, "model_unavailable"),
    IndexUnavailable: (503, "index_unavailable"),
    RemoteGeneratorError: (502, "generator_unavailable"),
}


def known_error_code(exc: Exception) -> str | None:
    """The error code of an exception whose message is written for the caller, None for any other."""
    return next((code for kind, (_, code) in _SIMPLE.items() if isinstance(exc, kind)), None)


def _simple_handler(status: int, code: str) -> Any:
    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return error_response(status, code, str(exc))

    return handle


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    for kind, (status, code) in _SIMPLE.items():
        app.add_exception_handler(kind, _simple_handler(status, code))

    @app.exception_handler(PipelineInvalid)
    async def _pipeline_invalid(_: Request, exc: PipelineInvalid) -> JSONResponse:
        return error_response(422, "invalid_pipeline", str(exc), problems=[p.as_dict() for p in exc.problems])

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(sqlalchemy.exc.DataError)
    async def _unstorable(request: Request, exc: sqlalchemy.exc.DataError) -> JSONResponse:
        # A value from the request that the database refuses even to look up (PostgreSQL takes no NUL in text, a
        # name longer than its column): the caller's to change. The driver's message quotes the SQL: not sent.
        logger.info("%s %s: the database refused a value (%s)", request.method, request.url.path,
                    exc.orig.__class__.__name__)
        return error_response(422, "invalid_request", "A value in this request cannot be stored or looked up (a "
                              "NUL or other control character, or a name too long): remove it and try again.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error on %s %s: %s", request.method, request.url.path, exc.__class__.__name__,
                     exc_info=exc)
        return error_response(500, "internal_error", "ragpress hit an internal error; the server log has details.")
