"""Database access: typed ORM schema, engines, migrations and dialect-aware upserts."""

from __future__ import annotations

from tagger.db.engine import is_postgres, make_engine, make_sessionmaker, make_statement_engine, run_statement
from tagger.db.migrate import upgrade

__all__ = ["make_engine", "make_sessionmaker", "make_statement_engine", "run_statement", "upgrade", "is_postgres"]
