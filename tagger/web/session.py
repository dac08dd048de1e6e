"""Browser sessions for the review pages: log in with an API token, a signed cookie, a CSRF token per session.

The cookie (Starlette's SessionMiddleware, signed with TAGGER_WEB_SECRET) holds a random session id
and a CSRF token, never the API token. The session itself is a database row (`web_sessions`, the id's
SHA-256): every request checks that it has not ended and that its token is still live, so logging out
ends it even where a copy of the cookie survives, and revoking a token ends all its sessions. Every
state-changing form carries the session's CSRF token (403 without it); the cookie is SameSite=lax.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Any

from fastapi import HTTPException, Request, status
from sqlalchemy import delete, or_, select, update

from tagger.db.schema import ApiToken, WebSession, utcnow
from tagger.tokens import Principal, authenticate, digest

SESSION_LIFETIME = timedelta(hours=12)  # the cookie's max age, and the session row's


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf(request: Request, given: str | None) -> None:
    expected = request.session.get("csrf")
    if not expected or not given or not hmac.compare_digest(str(expected), given):
        reason = "missing or wrong CSRF token: reload the page and try again"
        if not expected and request.url.scheme == "http" and request.app.state.settings.web_cookie_secure:
            reason += (
                " (no session came with this request: the session cookie is HTTPS-only, so a browser on plain "
                "HTTP never sends it back; use HTTPS, or set TAGGER_WEB_COOKIE_SECURE=0 on a trusted network)"
            )
        raise HTTPException(status.HTTP_403_FORBIDDEN, reason)


def log_in(request: Request, token: str) -> Principal | None:
    """Start a session for a valid, unrevoked API token; None (and no session) otherwise."""
    principal = authenticate(request.app.state.sessions, token.strip())
    if principal is None:
        return None
    log_out(request)  # a session already in this browser ends: its cookie opens nothing any more
    secret = secrets.token_urlsafe(32)
    with request.app.state.sessions() as session, session.begin():
        session.add(WebSession(id_sha256=digest(secret), token_id=principal.token_id))
        # Ended and expired sessions are kept no longer than a cookie could still present them.
        session.execute(
            delete(WebSession).where(
                or_(WebSession.ended_at.is_not(None), WebSession.created_at < utcnow() - SESSION_LIFETIME)
            )
        )
    request.session.clear()  # a new session on log-in: no fixation
    request.session["sid"] = secret
    csrf_token(request)
    return principal


def log_out(request: Request) -> None:
    """End this session: its row is marked ended, so the cookie no longer opens anything anywhere."""
    secret = request.session.get("sid")
    request.session.clear()
    if secret:
        with request.app.state.sessions() as session, session.begin():
            session.execute(
                update(WebSession)
                .where(WebSession.id_sha256 == digest(str(secret)), WebSession.ended_at.is_(None))
                .values(ended_at=utcnow())
            )


def user(request: Request) -> Principal | None:
    """Whoever this session belongs to, while the session has not ended and its token is live."""
    secret = request.session.get("sid")
    if not secret:
        return None
    with request.app.state.sessions() as session:
        found = session.execute(
            select(ApiToken.name, ApiToken.role, ApiToken.id)
            .join(WebSession, WebSession.token_id == ApiToken.id)
            .where(
                WebSession.id_sha256 == digest(str(secret)),
                WebSession.ended_at.is_(None),
                WebSession.created_at >= utcnow() - SESSION_LIFETIME,
                ApiToken.revoked_at.is_(None),
            )
        ).first()
    if found is None:
        request.session.clear()
        return None
    return Principal(found.name, found.role, found.id)


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
