"""Errors as `application/problem+json`, with a readable `detail`; never a stack trace."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Generic, TypeVar

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from services.servicekit.db import is_transient

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def title_of(status: int) -> str:
    """The standard reason phrase of any status, so no caller has to supply its own."""
    if status in TITLES:
        return TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Problem(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def field_error(field: str, message: str, where: str = "query") -> dict[str, str]:
    """One entry of a 422's `errors`: the field at fault, where it is (query, path, body), why."""
    return {"field": field, "in": where, "message": message}


def invalid(field: str, message: str, where: str = "query") -> Problem:
    """A 422 naming the field at fault, for a route to raise."""
    return Problem(
        422, f"invalid request: {field}: {message}", errors=[field_error(field, message, where)]
    )


def problem_response(
    status: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"type": "about:blank", "title": title_of(status), "status": status}
    body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


E = TypeVar("E", bound=Exception)


def _no_headers(_: Exception) -> dict[str, str]:
    return {}


def _no_members(_: Exception) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class ProblemOf(Generic[E]):
    """How one kind of domain error is answered; the domain error itself knows no HTTP.

    A service lists its domain errors once (`ErrorMap`), `build_app` installs them,
    and the same list documents the routes' error answers in OpenAPI.
    """

    status: int
    description: str
    detail: Callable[[E], str] = str
    headers: Callable[[E], dict[str, str]] = _no_headers
    members: Callable[[E], dict[str, Any]] = _no_members

    def response(self, exc: E) -> JSONResponse:
        members = self.members(exc)
        return problem_response(self.status, self.detail(exc), headers=self.headers(exc), **members)


ErrorMap = Mapping[type[Exception], ProblemOf[Any]]


def documented(errors: ErrorMap, others: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` of a route: its domain errors, the others it may answer, and 422."""
    content: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
    answers = {**others, 422: "invalid request"}
    responses: dict[int | str, dict[str, Any]] = {
        status: {"description": description, **content} for status, description in answers.items()
    }
    for problem in errors.values():
        if problem.status in responses:
            described = responses[problem.status]["description"]
            responses[problem.status]["description"] = f"{described}; {problem.description}"
        else:
            responses[problem.status] = {"description": problem.description, **content}
    return responses


def _field_name(loc: tuple[Any, ...]) -> str:
    """`("body", "jobDescription")` -> `jobDescription`; the body itself -> `body`."""
    if not loc:
        return "body"
    parts = [str(part) for part in loc[1:] if not isinstance(part, int)]
    return ".".join(parts) or str(loc[0])


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        errors.append(
            field_error(
                _field_name(loc), str(error.get("msg", "invalid")), str(loc[0]) if loc else "body"
            )
        )
    return errors


async def _on_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(exc.status, exc.detail, headers=exc.headers, **exc.extra)


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    summary = "; ".join(f"{error['field']}: {error['message']}" for error in errors)
    return problem_response(422, f"invalid request: {summary}", errors=errors)


async def _on_http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else title_of(exc.status_code)
    return problem_response(exc.status_code, detail, headers=dict(exc.headers or {}))


# Text PostgreSQL cannot store (U+0000, in text or jsonb): the client's input, never a 5xx.
UNSTORABLE_TEXT: tuple[type[Exception], ...] = (
    asyncpg.exceptions.CharacterNotInRepertoireError,
    asyncpg.exceptions.UntranslatableCharacterError,
)
NUL = "\x00"
NUL_MESSAGE = "must not contain NUL (U+0000) characters"


def nul_fields(value: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Where decoded JSON holds U+0000 (in a string or a key), named as `validation_errors`
    names fields: dotted, list positions left out; each once, in document order."""
    found: list[str] = []
    if isinstance(value, str):
        if NUL in value:
            found.append(".".join(path) or "body")
    elif isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            if NUL in name:
                found.append(".".join((*path, name.replace(NUL, "\\u0000"))))
            else:
                found.extend(nul_fields(item, (*path, name)))
    elif isinstance(value, list):
        for item in value:
            found.extend(nul_fields(item, path))
    return list(dict.fromkeys(found))


async def _nul_errors(request: Request) -> list[dict[str, str]]:
    """The request's parameters and body fields that hold U+0000; the body when none is found."""
    errors = [
        field_error(name, NUL_MESSAGE, where)
        for where, params in (("path", request.path_params), ("query", request.query_params))
        for name, value in params.items()
        if isinstance(value, str) and (NUL in value or NUL in name)
    ]
    try:
        # The route has read the body already, so `json()` answers from the request's cache;
        # the timeout only guards against waiting on a stream someone else consumed.
        async with asyncio.timeout(1.0):
            body = await request.json()
    except (ValueError, RuntimeError, ClientDisconnect, TimeoutError):
        body = None  # not JSON, or not readable: the body as a whole is named below
    errors.extend(field_error(name, NUL_MESSAGE, "body") for name in nul_fields(body))
    return errors or [field_error("body", NUL_MESSAGE, "body")]


async def _on_unstorable_text(request: Request, exc: Exception) -> JSONResponse:
    errors = await _nul_errors(request)
    fields = ", ".join(error["field"] for error in errors)
    return problem_response(
        422, f"invalid request: {fields}: {NUL_MESSAGE}; nothing was changed", errors=errors
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if is_transient(exc):
        # The database is away for a moment: the client may retry; nothing was committed.
        log.warning("database unavailable", path=request.url.path, error=repr(exc))
        return problem_response(
            503,
            "the database is unavailable; nothing was changed, retry shortly",
            headers={"Retry-After": "1"},
        )
    log.exception("unhandled error", path=request.url.path, error_type=type(exc).__name__)
    return problem_response(500, "internal error; the request was not completed")


def _on_domain_error(errors: ErrorMap) -> Callable[[Request, Exception], Any]:
    async def handle(_: Request, exc: Exception) -> JSONResponse:
        for kind in type(exc).__mro__:
            if kind in errors:
                return errors[kind].response(exc)
        raise exc  # unreachable: only registered types are routed here

    return handle


def install_problem_handlers(app: FastAPI, errors: ErrorMap | None = None) -> None:
    """The one place exceptions become problem documents: the kit's and the service's."""
    app.add_exception_handler(Problem, _on_problem)
    if errors:
        handle = _on_domain_error(errors)
        for kind in errors:
            app.add_exception_handler(kind, handle)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    for unstorable in UNSTORABLE_TEXT:
        app.add_exception_handler(unstorable, _on_unstorable_text)
    app.add_exception_handler(Exception, _on_unexpected)
