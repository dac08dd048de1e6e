"""The FastAPI application: the HTTP API, and its OpenAPI schema behind a token like every route."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request, status
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.orm import Session, sessionmaker

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

    @app.exception_handler(NotFoundError)
    @app.exception_handler(JobNotFound)
    @app.exception_handler(ImageNotFound)
    def not_found(_: Request, exc: Exception) -> JSONResponse:
        """Nothing by that name, from any route: 404 with the reason (routes do not map it one by one)."""
        return JSONResponse({"detail": str(exc)}, status.HTTP_404_NOT_FOUND)

    @app.exception_handler(InvalidSubmission)
    def invalid(_: Request, exc: InvalidSubmission) -> JSONResponse:
        """A submission or job control the client refused: 422 with its reason, from the API and the pages."""
        return JSONResponse({"detail": str(exc)}, status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(BrokerUnavailable)
    def no_broker(_: Request, __: BrokerUnavailable) -> JSONResponse:
        return JSONResponse({"detail": "the broker cannot be reached"}, status.HTTP_503_SERVICE_UNAVAILABLE)

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
