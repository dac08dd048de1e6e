"""Dialect-aware INSERT ... ON CONFLICT for PostgreSQL and SQLite, the two databases we support."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Result
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def _insert(session: Session, model: Any) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"upserts are implemented for PostgreSQL and SQLite, not {dialect}")


def affected(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (typed: `Session.execute` returns a plain Result)."""
    return int(cast(CursorResult[Any], result).rowcount)


def insert_ignore(session: Session, model: Any, rows: Sequence[dict[str, Any]], keys: list[str]) -> Any:
    return _insert(session, model).values(list(rows)).on_conflict_do_nothing(index_elements=keys)


def upsert(
    session: Session, model: Any, rows: Sequence[dict[str, Any]], keys: list[str], update_cols: list[str]
) -> Any:
    stmt = _insert(session, model).values(list(rows))
    return stmt.on_conflict_do_update(index_elements=keys, set_={c: getattr(stmt.excluded, c) for c in update_cols})


def upsert_many(session: Session, model: Any, keys: list[str], update_cols: list[str]) -> Any:
    """An upsert without values, for executemany: `session.execute(upsert_many(...), list_of_rows)`."""
    stmt = _insert(session, model)
    return stmt.on_conflict_do_update(index_elements=keys, set_={c: getattr(stmt.excluded, c) for c in update_cols})


def insert_ignore_many(session: Session, model: Any, keys: list[str]) -> Any:
    """An INSERT ... ON CONFLICT DO NOTHING without values, for executemany: `session.execute(stmt, rows)`."""
    return _insert(session, model).on_conflict_do_nothing(index_elements=keys)
