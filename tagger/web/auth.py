"""Who is calling: a bearer token checked against the hashed tokens, and the role a route needs.

401 when the token is missing, malformed, unknown or revoked (with a `WWW-Authenticate` header);
403 when the token is valid but its role is below the route's.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tagger.tokens import ROLES, Principal, authenticate

_bearer = HTTPBearer(auto_error=False, description="An API token from `tagger tokens create NAME --role ROLE`.")


def require(role: str) -> Callable[..., Principal]:
    """A dependency admitting tokens of `role` or above; the route receives the Principal."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:  # noqa: B008
        principal = None
        if credentials is not None:  # HTTPBearer(auto_error=False) gives None for any other scheme
            principal = authenticate(request.app.state.sessions, credentials.credentials)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a valid API token is required: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.may(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this token's role ({principal.role}) is below {role}")
        return principal

    check.required_role = role  # type: ignore[attr-defined]  # read by the route audit in the tests
    return check
