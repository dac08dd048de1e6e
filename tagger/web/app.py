"""The FastAPI application: the HTTP API, and its OpenAPI schema behind a token like every route."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request, Response, status
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from tagger.settings import Settings
from tagger.tokens import Principal
from tagger.web.auth import require


def create_app(settings: Settings, sessions: sessionmaker[Session]) -> FastAPI:
    """The app for `settings` on the database `sessions` (the caller has brought its schema up to date).

    Raises ConfigError without a broker (submissions travel as Celery messages).
    """
    from starlette.middleware.sessions import SessionMiddleware

    from tagger.errors import ConfigError, NotFoundError
    from tagger.web.api import router
    from tagger.web.review import error_page, is_page
    from tagger.web.review import router as review_router
    from tagger.web.session import SESSION_LIFETIME, LoginRequired
    from tagger_client.client import TaggerClient
    from tagger_client.errors import BrokerUnavailable, ImageNotFound, InvalidSubmission, JobNotFound

    if not settings.broker_url:
        raise ConfigError("tagger serve needs TAGGER_BROKER_URL: submissions go to the workers through it")
    client = TaggerClient(broker_url=settings.broker_url, database_url=settings.database_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        client.close()

    # FastAPI's own /docs and /openapi.json would be open to anyone: the schema is served below, behind a token.
    app = FastAPI(
        title="tagger",
        summary="Tag image archives: submit jobs, follow them, read suggestions, record decisions.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.sessions = sessions
    app.state.client = client
    app.state.settings = settings
    app.include_router(router)
    app.include_router(review_router)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.web_secret or secrets.token_urlsafe(32),
        session_cookie="tagger_session",
        max_age=int(SESSION_LIFETIME.total_seconds()),
        same_site="lax",  # every state-changing request also needs the session's CSRF token
        https_only=bool(settings.web_cookie_secure),
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Every refusal, raised by a route or mapped below: FastAPI's JSON `{"detail": ...}` for the API, a
        page with the reason for the review pages' browser."""
        if is_page(request):
            return error_page(request, exc.status_code, str(exc.detail), exc.headers)
        return await http_exception_handler(request, exc)

    @app.exception_handler(NotFoundError)
    @app.exception_handler(JobNotFound)
    @app.exception_handler(ImageNotFound)
    async def not_found(request: Request, exc: Exception) -> Response:
        """Nothing by that name, from any route: 404 with the reason (routes do not map it one by one)."""
        return await http_error(request, StarletteHTTPException(status.HTTP_404_NOT_FOUND, str(exc)))

    @app.exception_handler(InvalidSubmission)
    async def invalid(request: Request, exc: InvalidSubmission) -> Response:
        """A submission or job control the client refused: 422 with its reason, from the API and the pages."""
        return await http_error(request, StarletteHTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)))

    @app.exception_handler(BrokerUnavailable)
    async def no_broker(request: Request, __: BrokerUnavailable) -> Response:
        reason = "the broker cannot be reached"
        return await http_error(request, StarletteHTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, reason))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        """A parameter out of its bounds: FastAPI's 422 with each error, or a page saying which."""
        if is_page(request):
            return error_page(request, status.HTTP_422_UNPROCESSABLE_CONTENT, _readable(exc.errors()))
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(LoginRequired)
    def to_login(request: Request, _: LoginRequired) -> RedirectResponse:
        """Back to the page after logging in, with its query; a form post (its session gone) to /review."""
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        back = back if request.method == "GET" else "/review"
        return RedirectResponse(f"/login?next={quote(back, safe='')}", status.HTTP_303_SEE_OTHER)

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    def openapi(_: Principal = Depends(require("read"))) -> dict[str, Any]:  # noqa: B008
        return app.openapi()

    return app


def _readable(errors: Sequence[Any]) -> str:
    """FastAPI's validation errors as one line a person can read: 'page: Input should be ...; ...'."""
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body", "path", "form"))
        parts.append(f"{where}: {error.get('msg', '')}" if where else str(error.get("msg", "")))
    return "; ".join(parts) or "the request was refused"
