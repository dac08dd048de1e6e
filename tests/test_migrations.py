"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tagger.db.schema import Base


def test_migrated_schema_matches_the_models(settings, sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as session:
        context = MigrationContext.configure(session.connection(), opts={"compare_type": False})
        diff = [d for d in compare_metadata(context, Base.metadata) if not _ignorable(d)]
    assert diff == []


def _ignorable(change: object) -> bool:
    # Server defaults added in migrations for existing rows are not mirrored in the models.
    return isinstance(change, list) and all(c[0] == "modify_default" for c in change)
