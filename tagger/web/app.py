"""The FastAPI application: the HTTP API, and its OpenAPI schema behind a token like every route."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session, sessionmaker

from tagger.settings import Settings
from tagger.tokens import Principal
from tagger.web.auth import require


def create_app(settings: Settings, sessions: sessionmaker[Session]) -> FastAPI:
    """The app for `settings` on the database `sessions` (the caller has brought its schema up to date).

    Raises ConfigError without a broker (submissions travel as Celery messages).
    """
    from starlette.middleware.sessions import SessionMiddleware

    from tagger.errors import ConfigError
    from tagger.web import errors
    from tagger.web.api import router
    from tagger.web.limits import RequestLimits
    from tagger.web.pages import ROUTERS
    from tagger.web.session import SESSION_LIFETIME
    from tagger_client.client import TaggerClient

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
    for each in (router, *ROUTERS):
        app.include_router(each)
    app.add_middleware(RequestLimits, max_body=settings.api_max_body_bytes)  # before any route reads a body
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.web_secret or secrets.token_urlsafe(32),
        session_cookie="tagger_session",
        max_age=int(SESSION_LIFETIME.total_seconds()),
        same_site="lax",  # every state-changing request also needs the session's CSRF token
        https_only=bool(settings.web_cookie_secure),
    )
    errors.install(app)

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    def openapi(_: Principal = Depends(require("read"))) -> dict[str, Any]:  # noqa: B008
        return app.openapi()

    return app
