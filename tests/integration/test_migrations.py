"""The migrations build exactly the schema the models describe, and move existing data, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from tagger.db import make_engine
from tagger.db.migrate import alembic_config, current_revision, head_revision, upgrade
from tagger.db.schema import Base


def test_migrated_schema_matches_the_models(settings, sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as session:
        context = MigrationContext.configure(session.connection(), opts={"compare_type": True})
        diff = [d for d in compare_metadata(context, Base.metadata) if not _ignorable(d)]
    assert diff == []


def test_the_revision_checks_read_what_alembic_reads(database_url: str) -> None:
    """The read commands check the schema without loading alembic: the head from the scripts' lines, the
    database's revision with one query. Both must say what alembic itself says, before and after a migration."""
    from alembic.script import ScriptDirectory

    engine = make_engine(database_url)
    assert current_revision(engine) is None  # a database tagger never set up
    command.upgrade(alembic_config(engine), "0003")
    with engine.connect() as conn:
        assert current_revision(engine) == MigrationContext.configure(conn).get_current_revision() == "0003"
    upgrade(engine)
    assert head_revision() == ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert current_revision(engine) == head_revision()
    engine.dispose()


def _ignorable(change: object) -> bool:
    # Server defaults added in migrations for existing rows are not mirrored in the models.
    return isinstance(change, list) and all(c[0] == "modify_default" for c in change)


def test_image_identity_migration_keeps_every_row(database_url: str) -> None:
    """Rows written before images had a storage identity (0003) keep their ids, keys, tags and jobs."""
    engine = make_engine(database_url)
    command.upgrade(alembic_config(engine), "0003")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO model_versions (id, version, arch, uri, sha256, status, is_active, meta, created_at) "
                "VALUES (1, 'm1', 'resnet18', 'file:///models/m1', 'x', 'active', true, '{}', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(text("INSERT INTO tags (id, name) VALUES (1, 'night'), (2, 'car')"))
        conn.execute(
            text(
                "INSERT INTO jobs (id, kind, state, source, storage_url, queue, batch_size, total, done, failed, "
                "skipped, batches, listing_complete, options, max_attempts, created_at) VALUES "
                "('a' || repeat('0', 31), 'tag', 'done', 's', 'file:///archive', 'tagger.bulk', 8, 2, 2, 0, 0, 1, "
                "true, '{}', 5, CURRENT_TIMESTAMP)".replace("repeat('0', 31)", "'" + "0" * 31 + "'")
            )
        )
        conn.execute(
            text(
                "INSERT INTO images (id, key, created_at, storage_url, model_version_id) VALUES "
                "(10, 'a.jpg', CURRENT_TIMESTAMP, 's3://stills', 1), "  # where it was read from
                "(11, 'b.jpg', CURRENT_TIMESTAMP, NULL, 1), "  # only its job knows
                "(12, 'c.jpg', CURRENT_TIMESTAMP, NULL, NULL)"  # nobody knows
            )
        )
        conn.execute(
            text(
                "INSERT INTO job_items (job_id, image_id, state, attempts, updated_at) VALUES "
                "('a" + "0" * 31 + "', 11, 'done', 1, CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO suggestions (image_id, tag_id, model_version_id, probability, created_at) VALUES "
                "(10, 1, 1, 0.9, CURRENT_TIMESTAMP), (11, 2, 1, 0.7, CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO labels (image_id, tag_id, source, created_at) VALUES (10, 1, 'manual', CURRENT_TIMESTAMP)"
            )
        )
    upgrade(engine)
    with engine.connect() as conn:
        images = conn.execute(
            text("SELECT i.id, s.url, i.key FROM images i JOIN storages s ON s.id = i.storage_id ORDER BY i.id")
        ).all()
        suggestions = conn.execute(
            text("SELECT image_id, tag_id, probability FROM suggestions ORDER BY image_id")
        ).all()
        labels = conn.execute(text("SELECT image_id, tag_id, positive FROM labels")).all()
    engine.dispose()
    assert [tuple(r) for r in images] == [
        (10, "s3://stills", "a.jpg"),
        (11, "file:///archive", "b.jpg"),
        (12, "unknown:", "c.jpg"),
    ]
    assert [tuple(r) for r in suggestions] == [(10, 1, 0.9), (11, 2, 0.7)]
    assert [tuple(r) for r in labels] == [(10, 1, True)]
