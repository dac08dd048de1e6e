"""Browser sessions for the review pages: log in with an API token, a signed cookie, a CSRF token per session.

The cookie (Starlette's SessionMiddleware, signed with TAGGER_WEB_SECRET) holds the token's id and a
CSRF token, never the secret; every request checks that the token is still live, so revoking it logs
its sessions out. Every state-changing form carries the session's CSRF token (403 without it), and
the cookie is SameSite=strict.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from fastapi import HTTPException, Request, status
from sqlalchemy import select

from tagger.db.schema import ApiToken
from tagger.tokens import Principal, authenticate


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf(request: Request, given: str | None) -> None:
    expected = request.session.get("csrf")
    if not expected or not given or not hmac.compare_digest(str(expected), given):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token: reload the page and try again")


def log_in(request: Request, token: str) -> Principal | None:
    principal = authenticate(request.app.state.sessions, token.strip())
    if principal is None:
        return None
    with request.app.state.sessions() as session:
        token_id = session.scalar(select(ApiToken.id).where(ApiToken.name == principal.name))
    request.session.clear()  # a new session on log-in: no fixation
    request.session["token_id"] = token_id
    csrf_token(request)
    return principal


def user(request: Request) -> Principal | None:
    """Whoever this session belongs to, while their token is live."""
    token_id = request.session.get("token_id")
    if token_id is None:
        return None
    with request.app.state.sessions() as session:
        row = session.get(ApiToken, token_id)
        if row is None or row.revoked_at is not None:
            request.session.clear()
            return None
        return Principal(row.name, row.role)


class LoginRequired(Exception):
    """Raised by `require_user`; the app answers with a redirect to the log-in page."""


def require_user(role: str) -> Any:
    """A dependency for pages: a session of `role` or above (a redirect to /login without one, 403 below)."""

    def check(request: Request) -> Principal:
        principal = user(request)
        if principal is None:
            raise LoginRequired()
        if not principal.may(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"your role ({principal.role}) is below {role}")
        return principal

    check.required_role = role  # type: ignore[attr-defined]
    return check
