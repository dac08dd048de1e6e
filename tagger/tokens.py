"""API tokens: who may use the HTTP API, and with which role.

Roles are ordered: read < submit < review < admin; a token holds everything below its role. The
secret is shown once, when created, and stored only as its SHA-256 (a 256-bit random secret needs
no slow hash: there is nothing to guess); a token is found by its digest.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tagger.errors import ConfigError, NotFoundError

if TYPE_CHECKING:  # the CLI's parser reads ROLES for every command: SQLAlchemy loads when a token is used
    from sqlalchemy.orm import Session, sessionmaker

ROLES = ("read", "submit", "review", "admin")
LAST_USED_STEP = timedelta(minutes=1)  # `last_used_at` is kept to the minute: no write on every request
PREFIX = "tgr_"


@dataclass(frozen=True)
class Principal:
    """Whoever presented a valid token: its name (recorded on what they decide) and its role."""

    name: str
    role: str
    token_id: int  # the token's row: a browser session opened with it is bound to it

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(sessions: sessionmaker[Session], name: str, role: str) -> str:
    """A new token named `name` with `role`; returns the secret, which is not stored and cannot be shown again.

    Raises ConfigError for an unknown role or a name already in use.
    """
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if not name.strip() or len(name) > 200:
        raise ConfigError("a token needs a name of 1 to 200 characters (who or what uses it)")
    from sqlalchemy.exc import IntegrityError

    from tagger.db.schema import ApiToken

    token = PREFIX + secrets.token_urlsafe(32)
    try:
        with sessions() as session, session.begin():
            session.add(ApiToken(name=name, role=role, token_sha256=digest(token)))
    except IntegrityError:
        raise ConfigError(f"a token named {name!r} exists; revoke it or choose another name") from None
    return token


def authenticate(sessions: sessionmaker[Session], token: str) -> Principal | None:
    """The principal of a valid, unrevoked token (its last use recorded to the minute), or None."""
    if not token.startswith(PREFIX):
        return None
    from sqlalchemy import select, update

    from tagger.db.schema import ApiToken, utcnow

    wanted = digest(token)
    now = utcnow()
    with sessions() as session, session.begin():
        row = session.execute(
            select(ApiToken.id, ApiToken.name, ApiToken.role).where(
                ApiToken.token_sha256 == wanted, ApiToken.revoked_at.is_(None)
            )
        ).first()
        if row is None:
            return None
        session.execute(  # writes only when the minute has turned
            update(ApiToken)
            .where(
                ApiToken.id == row.id,
                (ApiToken.last_used_at.is_(None)) | (ApiToken.last_used_at < now - LAST_USED_STEP),
            )
            .values(last_used_at=now)
        )
    return Principal(row.name, row.role, row.id)


def listed(sessions: sessionmaker[Session]) -> list[TokenInfo]:
    """Every token without its secret, oldest first."""
    from sqlalchemy import select

    from tagger.db.schema import ApiToken

    with sessions() as session:
        rows = session.scalars(select(ApiToken).order_by(ApiToken.id))
        return [TokenInfo(r.name, r.role, r.created_at, r.last_used_at, r.revoked_at) for r in rows]


def revoke(sessions: sessionmaker[Session], name: str) -> None:
    """The named token stops working at once. Raises NotFoundError when there is no such live token."""
    from sqlalchemy import update

    from tagger.db.schema import ApiToken, utcnow

    with sessions() as session, session.begin():
        result = session.execute(
            update(ApiToken)
            .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFoundError(f"no live token named {name!r}; see `tagger tokens list`")
