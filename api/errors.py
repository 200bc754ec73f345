"""The error types services raise, and the handlers that turn every error into RFC 9457
`application/problem+json`."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("rebound.errors")


class Problem(Exception):
    """An expected error with its HTTP status; `detail` is what a person reads."""

    status: int = 500
    title: str | None = None
    type_slug: str | None = None

    def __init__(
        self,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        keep_changes: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}
        # True when the refusal itself must be recorded (e.g. revoking a stolen token family).
        self.keep_changes = keep_changes


class BadRequest(Problem):
    status = 400


class Unauthorized(Problem):
    status = 401

    def __init__(self, detail: str = "Authentication is required.", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="rebound"'})
        super().__init__(detail, **kwargs)


class Forbidden(Problem):
    status = 403


class NotFound(Problem):
    status = 404

    def __init__(self, detail: str = "Not found.", **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)


class Conflict(Problem):
    status = 409


class Gone(Problem):
    status = 410


class PreconditionFailed(Problem):
    status = 412

    def __init__(
        self,
        detail: str = "The object changed since you read it; fetch it again and retry.",
        **kwargs: Any,
    ) -> None:
        super().__init__(detail, **kwargs)


class PayloadTooLarge(Problem):
    status = 413


class Unprocessable(Problem):
    """422 for a rule the request breaks; `loc` names the field when there is one."""

    status = 422

    def __init__(
        self,
        detail: str,
        *,
        loc: list[str | int] | None = None,
        error_type: str = "value_error",
        **kwargs: Any,
    ) -> None:
        extra = kwargs.pop("extra", {}) or {}
        extra.setdefault("errors", [{"loc": loc or ["body"], "msg": detail, "type": error_type}])
        super().__init__(detail, extra=extra, **kwargs)


class TooManyRequests(Problem):
    status = 429


class ServiceUnavailable(Problem):
    status = 503


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, as every error response carries them."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    type_slug: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://rebound.dev/problems/{type_slug}" if type_slug else "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        errors.append(
            {
                "loc": [str(part) if not isinstance(part, int) else part for part in error["loc"]],
                "msg": error["msg"],
                "type": error["type"],
            }
        )
    return errors


def _document_validation_problems(app: FastAPI) -> None:
    """FastAPI documents its own 422 as `application/json`; ours are problem+json."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                answer = operation.get("responses", {}).get("422")
                if answer and PROBLEM_JSON not in answer.get("content", {}):
                    answer["content"] = {
                        PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
                    }
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.detail,
            title=exc.title,
            headers=exc.headers,
            extra=exc.extra,
            type_slug=exc.type_slug,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"])
        return problem_response(
            422,
            f"{where}: {first['msg']}" if where else str(first["msg"]),
            title="Unprocessable Content",
            extra={"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            from api.http.middleware import _BodyTooLarge

            if isinstance(exc.__cause__, _BodyTooLarge):
                # a streamed body went over the limit while FastAPI was reading it: re-raise
                # so that BodySizeLimitMiddleware answers its 413
                raise exc.__cause__
            # A body that is not text (invalid UTF-8) is as unreadable as invalid JSON: 422.
            return problem_response(
                422,
                "body: the body is not valid JSON in UTF-8",
                title="Unprocessable Content",
                extra={
                    "errors": [
                        {"loc": ["body"], "msg": "not valid JSON in UTF-8", "type": "json_invalid"}
                    ]
                },
            )
        if exc.status_code == 404 and detail == "Not Found":
            detail = "There is nothing at this address."
        elif exc.status_code == 405:
            detail = "This address does not accept that method."
        return problem_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    _document_validation_problems(app)

    @app.exception_handler(DataError)
    async def _data(_request: Request, _exc: DataError) -> JSONResponse:
        # The database refused a value the schemas let through (PostgreSQL: a NUL
        # character in text, e.g. an id of "%00" in the path): bad input, not a crash.
        return problem_response(
            422,
            "A value in the request cannot be stored or searched for "
            "(it contains a NUL character or is out of range).",
            title="Unprocessable Content",
            extra={"errors": [{"loc": [], "msg": "invalid value", "type": "value_error"}]},
        )

    def _database_unreachable(request: Request, exc: Exception) -> JSONResponse:
        route = request.scope.get("route")
        log.warning(
            "database_unreachable", route=getattr(route, "path", None), error=type(exc).__name__
        )
        return problem_response(
            503,
            "The database is not reachable right now; try again shortly.",
            headers={"Retry-After": "1"},
        )

    # The database went away (restarted, failed over, a connection cut) wherever it is
    # noticed, including after the route's own handling, e.g. while a session closes:
    # a 503 the client may retry, never a 500.
    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> JSONResponse:
        return _database_unreachable(request, exc)

    @app.exception_handler(PoolTimeoutError)
    async def _pool_timeout(request: Request, exc: PoolTimeoutError) -> JSONResponse:
        return _database_unreachable(request, exc)

    @app.exception_handler(DBAPIError)
    async def _dbapi(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return _database_unreachable(request, exc)
        raise exc  # any other database error is a bug: the 500 handler below logs it

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, _exc: Exception) -> JSONResponse:
        # The route template, never the raw path: paths such as /f/{token} carry secrets.
        route = request.scope.get("route")
        log.exception("unhandled_error", route=getattr(route, "path", None))
        return problem_response(500, "Something went wrong on our side; it has been logged.")
