"""Database access: typed ORM schema, engines, migrations and dialect-aware upserts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tagger.db.engine import is_postgres, make_engine, make_sessionmaker, make_statement_engine, run_statement

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["make_engine", "make_sessionmaker", "make_statement_engine", "run_statement", "upgrade", "is_postgres"]


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (`tagger.db.migrate.upgrade`). Alembic is imported here, when a
    command migrates, not by every command that reads: it costs about a third of a second to load."""
    from tagger.db.migrate import upgrade as migrate

    migrate(engine)
