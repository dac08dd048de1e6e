"""Schema migrations with Alembic, run programmatically so no alembic.ini is needed.

Alembic is imported only where a migration runs: the read commands check the schema's revision on every
start, and loading alembic (every dialect's DDL) cost them a third of a second.
"""

from __future__ import annotations

import fcntl
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_ID = 0x7A66E7  # an arbitrary advisory-lock id shared by every tagger process


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe when many workers start at once."""
    from alembic import command

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
    """The schema revision the database is at; None for a database tagger never set up (alembic's own
    table, read with one query)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(found) > 1:
        raise RuntimeError(f"the database has several schema heads {sorted(found)}; tagger's history is linear")
    return found[0] if found else None


_REVISION = re.compile(r'^(down_)?revision\s*(?::[^=]*)?=\s*(?:"([^"]*)"|None)', re.M)


def head_revision() -> str:
    """The newest revision of tagger's migrations: the one no other revision follows, read from the
    scripts' `revision` and `down_revision` lines (alembic's ScriptDirectory reads the same; a test compares)."""
    revisions: set[str] = set()
    followed: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("[0-9]*.py"):
        for down, value in _REVISION.findall(script.read_text(encoding="utf-8")):
            if value:
                (followed if down else revisions).add(value)
    heads = sorted(revisions - followed)
    if len(heads) != 1:
        raise RuntimeError(f"tagger's migrations must have one head, found {heads}: {MIGRATIONS / 'versions'}")
    return heads[0]
