"""RFC 9457 problem details for every error (``application/problem+json``).

Members: ``type`` (a URN naming the problem, or ``about:blank`` for plain HTTP errors), ``title``,
``status``, ``detail``, ``instance`` (the request path), plus ``code`` (stable, machine-readable)
and, for field errors, ``errors`` (``[{"loc", "detail", "type"}]``). Responses on the HMA routes
also carry ``message`` (what HMA clients read) and use 400 where lifeguard uses 422.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lifeguard.errors import (
    Conflict,
    Forbidden,
    ImportFormatError,
    InvalidSignal,
    LifeguardError,
    MediaError,
    NotFound,
)

log = logging.getLogger("lifeguard.api")

PROBLEM_JSON = "application/problem+json"
HMA_PREFIXES = ("/h/", "/m/", "/c/")


def problem_type(code: str) -> str:
    return f"urn:lifeguard:problem:{code}"


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})
        self.extra = extra


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(request: Request | None, p: Problem) -> JSONResponse:
    path = request.url.path if request is not None else ""
    status = p.status
    hma = path.startswith(HMA_PREFIXES)
    if hma and status == 422:
        status = 400
    body: dict[str, Any] = {
        "type": problem_type(p.code) if p.code != "http_error" else "about:blank",
        "title": p.title or _title(status),
        "status": status,
        "detail": p.detail,
        "instance": path,
        "code": p.code,
    }
    if p.errors is not None:
        body["errors"] = p.errors
    body.update(p.extra)
    if hma:
        body["message"] = p.detail
    return JSONResponse(body, status_code=status, headers=p.headers, media_type=PROBLEM_JSON)


def from_lifeguard_error(e: LifeguardError) -> Problem:
    if isinstance(e, MediaError):
        status = 413 if e.code == "too_large" else 422
        return Problem(status, e.code, e.message, title="Media could not be hashed")
    if isinstance(e, InvalidSignal):
        return Problem(422, e.code, e.message, title="Invalid signal")
    if isinstance(e, NotFound):
        return Problem(404, e.code, e.message)
    if isinstance(e, Conflict):
        return Problem(409, e.code, e.message)
    if isinstance(e, Forbidden):
        return Problem(403, e.code, e.message)
    if isinstance(e, ImportFormatError):
        return Problem(422, e.code, e.message, title="Unusable import file")
    # InvalidField and other validation-like errors.
    return Problem(422, e.code, e.message, title="Invalid value")


def _loc(loc: Sequence[Any]) -> str:
    return ".".join(str(x) for x in loc)


def install(app: FastAPI) -> None:
    """Register the handlers: every error becomes a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(LifeguardError)
    async def _lifeguard(request: Request, exc: LifeguardError) -> JSONResponse:
        return problem_response(request, from_lifeguard_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
            415: "unsupported_media_type",
        }.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such resource: {request.url.path}"
        elif exc.status_code == 405:
            detail = f"method {request.method} not allowed on {request.url.path}"
        elif exc.status_code == 400 and detail == "There was an error parsing the body":
            code = "malformed_body"
        return problem_response(
            request, Problem(exc.status_code, code, detail, headers=exc.headers)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errs):
            e0 = next(e for e in errs if e.get("type") == "json_invalid")
            why = (e0.get("ctx") or {}).get("error", "invalid JSON")
            pos = e0.get("loc", ("body", "?"))[-1]
            return problem_response(
                request,
                Problem(400, "malformed_json", f"request body is not valid JSON: {why} at {pos}"),
            )
        errors = [
            {"loc": _loc(e.get("loc", ())), "detail": str(e.get("msg", "")), "type": e.get("type")}
            for e in errs
        ]
        first = errors[0] if errors else {"loc": "", "detail": "invalid request"}
        detail = f"{first['loc']}: {first['detail']}" if first["loc"] else str(first["detail"])
        if len(errors) > 1:
            detail += f" (and {len(errors) - 1} more)"
        return problem_response(
            request,
            Problem(422, "validation_error", detail, title="Invalid request", errors=errors),
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return internal_error_response(request, exc)


def internal_error_response(request: Request, exc: BaseException) -> JSONResponse:
    """A 500 problem naming only an error id; the exception is logged with that id."""
    error_id = uuid.uuid4().hex[:12]
    log.error(
        "unhandled error %s on %s %s",
        error_id,
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return problem_response(
        request,
        Problem(500, "internal_error", f"internal error (logged as {error_id})", error_id=error_id),
    )
