"""How the app answers what goes wrong: every refusal, raised by a route or mapped from the client's and
the registry's errors, is FastAPI's JSON `{"detail": ...}` for the API and a page for the review pages'
browser; a page whose session is gone sends the browser to log in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response, status
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tagger.errors import NotFoundError, first_line
from tagger.web.pages.shared import error_page, is_page
from tagger.web.session import LoginRequired
from tagger_client.errors import (
    BrokerUnavailable,
    ImageNotFound,
    InvalidCursor,
    InvalidSubmission,
    JobNotFound,
    TagNotFound,
)


def install(app: FastAPI) -> None:
    """The app's exception handlers, one per kind of failure."""
    handlers: dict[type[Exception], Callable[..., Any]] = {
        StarletteHTTPException: http_error,
        NotFoundError: not_found,
        JobNotFound: not_found,
        ImageNotFound: not_found,
        TagNotFound: not_found,
        InvalidSubmission: invalid,
        InvalidCursor: invalid,
        BrokerUnavailable: no_broker,
        RequestValidationError: bad_request,
        LoginRequired: to_login,
        DataError: unstorable,
    }
    for failure, handler in handlers.items():
        app.add_exception_handler(failure, handler)


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Every refusal, raised by a route or mapped below: FastAPI's JSON `{"detail": ...}` for the API, a
    page with the reason for the review pages' browser."""
    if is_page(request):
        return error_page(request, exc.status_code, str(exc.detail), exc.headers)
    return await http_exception_handler(request, exc)


async def not_found(request: Request, exc: Exception) -> Response:
    """Nothing by that name, from any route: 404 with the reason (routes do not map it one by one)."""
    return await http_error(request, StarletteHTTPException(status.HTTP_404_NOT_FOUND, str(exc)))


async def invalid(request: Request, exc: InvalidSubmission | InvalidCursor) -> Response:
    """A submission, job control or page cursor the client refused: 422 with its reason, from the API and
    the pages."""
    return await http_error(request, StarletteHTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)))


async def no_broker(request: Request, __: BrokerUnavailable) -> Response:
    reason = "the broker cannot be reached"
    return await http_error(request, StarletteHTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, reason))


async def unstorable(request: Request, exc: DataError) -> Response:
    """A value the database refuses to store or compare (a NUL character in a JSON string, a number out of
    its column's range): 422 with the database's reason, never a 500."""
    reason = f"a value in this request cannot be stored: {first_line(exc.orig or exc)}"
    return await http_error(request, StarletteHTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, reason))


async def bad_request(request: Request, exc: RequestValidationError) -> Response:
    """A parameter out of its bounds: FastAPI's 422 with each error, or a page saying which."""
    if is_page(request):
        return error_page(request, status.HTTP_422_UNPROCESSABLE_CONTENT, _readable(exc.errors()))
    return await request_validation_exception_handler(request, exc)


def to_login(request: Request, _: LoginRequired) -> RedirectResponse:
    """Back to the page after logging in, with its query; a form post (its session gone) to /review."""
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    back = back if request.method == "GET" else "/review"
    return RedirectResponse(f"/login?next={quote(back, safe='')}", status.HTTP_303_SEE_OTHER)


def _readable(errors: Sequence[Any]) -> str:
    """FastAPI's validation errors as one line a person can read: 'page: Input should be ...; ...'."""
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body", "path", "form"))
        parts.append(f"{where}: {error.get('msg', '')}" if where else str(error.get("msg", "")))
    return "; ".join(parts) or "the request was refused"
