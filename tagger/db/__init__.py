"""Database access: typed ORM schema, engines, migrations and dialect-aware upserts."""

from __future__ import annotations

from tagger.db.engine import is_postgres, make_engine, make_sessionmaker
from tagger.db.migrate import upgrade

__all__ = ["make_engine", "make_sessionmaker", "upgrade", "is_postgres"]
