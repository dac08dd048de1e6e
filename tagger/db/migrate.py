"""Schema migrations with Alembic, run programmatically so no alembic.ini is needed."""

from __future__ import annotations

import fcntl
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_ID = 0x7A66E7  # an arbitrary advisory-lock id shared by every tagger process


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe when many workers start at once."""
    cfg = alembic_config(engine)
    if engine.dialect.name == "postgresql":
        # One transaction on one connection: the lock (released when it ends), the migrations, the commit. A
        # worker the server leaves a single connection still starts, and behind a transaction pooler the
        # lock and the migrations share one server connection.
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        return
    lock_path = _sqlite_lock_path(engine)
    if lock_path is None:
        command.upgrade(cfg, "head")
        return
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            command.upgrade(cfg, "head")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sqlite_lock_path(engine: Engine) -> Path | None:
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    return Path(database).with_suffix(".migrate.lock")


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at; None for a database tagger never set up."""
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory.from_config(alembic_config_for_scripts()).get_current_head())


def alembic_config_for_scripts() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg
