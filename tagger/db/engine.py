"""Engines and sessions: SQLite in WAL mode with a busy timeout, PostgreSQL with pre-ping."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from tagger.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs, since that is the driver we install."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(
    url: str, *, pre_ping: bool = True, pool_size: int = 5, max_overflow: int | None = None, **kwargs: Any
) -> Engine:
    """An engine for `url`. PostgreSQL connections are pinged on checkout (`pre_ping`), one round trip that
    finds a connection the server dropped before a session uses it (see `make_statement_engine`); up to
    `pool_size` stay open, and `max_overflow` more (default: as many again) open while they are busy."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            from pathlib import Path

            if sqlite_read_only(path):
                return _read_only_sqlite(path, **kwargs)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy, not pysqlite, emit BEGIN, so transactions take the write lock up front.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    # No server-side prepared statements: behind a transaction pooler (PgBouncer before 1.21, or with
    # max_prepared_statements = 0) psycopg's automatic ones, made on one server connection, are then looked
    # for on another ("prepared statement _pg3_0 does not exist / already exists"). tagger's hot statements
    # run once per batch, so planning them each time costs nothing measurable.
    connect_args = {"prepare_threshold": None} | kwargs.pop("connect_args", {})
    try:
        return create_engine(
            url,
            pool_pre_ping=pre_ping,
            pool_size=pool_size,
            max_overflow=pool_size if max_overflow is None else max_overflow,
            connect_args=connect_args,
            **kwargs,
        )
    except ImportError as exc:
        raise ConfigError(f"no driver for {url.split(':', 1)[0]}: {exc}") from exc


def sqlite_read_only(path: str) -> str | None:
    """Why the SQLite file at `path` can only be read (it, or its folder, is not writable: read-only media, a
    snapshot, another user's file), or None when it can be written (or does not exist yet)."""
    import os
    from pathlib import Path

    file = Path(path)
    if "?" in path or not file.is_file():
        return None
    if not os.access(file, os.W_OK):
        return f"{file} is not writable"
    if not os.access(file.parent, os.W_OK):
        return f"its folder {file.parent} is not writable (SQLite needs it for its journal)"
    return None


def _read_only_sqlite(path: str, **kwargs: Any) -> Engine:
    """The file opened `immutable`: read without the WAL index, journal or locks that SQLite would have to
    create beside it, which read-only media cannot hold. Nothing can write through this engine."""
    import sqlite3
    from pathlib import Path
    from urllib.parse import quote

    uri = f"file:{quote(str(Path(path).resolve()))}?immutable=1"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    engine = create_engine("sqlite://", creator=connect, **kwargs)
    event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA foreign_keys=ON"))
    return engine


def make_statement_engine(url: str, *, pool_size: int = 3) -> Engine:
    """The engine of a worker's hot path: one statement per batch to claim and one to write
    (`run_statement`), without the checkout's ping, which doubled their round trips. At most `pool_size`
    connections, opened as they are needed: one per batch the process runs at once."""
    return make_engine(url, pre_ping=False, pool_size=pool_size, max_overflow=0)


def run_statement(
    engine: Engine, sql: str, params: dict[str, Any], *, adapt: Callable[[Any], None] | None = None
) -> list[Any]:
    """Rows of one statement sent through the driver in autocommit (PostgreSQL): one round trip, no ORM.
    `adapt` is called with the driver's connection first (to register a type its parameters need).

    Without a ping on checkout, a connection the server dropped (a restart, a failover) is found by
    the statement itself: the engine's pool is then emptied and the statement sent once more on a new
    connection, which callers allow (the claim and the write change nothing when run twice: what they
    claimed or wrote is no longer pending). Any other error, or a second failure, propagates.
    """
    for attempt in (1, 2):
        with engine.connect() as conn:
            raw = conn.execution_options(isolation_level="AUTOCOMMIT").connection.driver_connection
            try:
                if adapt is not None:
                    adapt(raw)
                return list(raw.execute(sql, params).fetchall())  # type: ignore[union-attr]
            except Exception:
                if not (getattr(raw, "closed", False) or getattr(raw, "broken", False)):
                    raise
                conn.invalidate()
                engine.dispose()  # the other pooled connections went with the same server
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


# What PostgreSQL says when it has no connection slot left (SQLSTATE 53300, which a refused connection
# does not carry in psycopg's error): the server's max_connections, a database's or a role's limit.
_OUT_OF_SLOTS = ("too many clients", "too many connections", "connection slots are reserved")
SLOT_PATIENCE_SECONDS = 5.0  # how long a connection refused for want of slots is tried again before it fails


def out_of_slots(exc: BaseException) -> bool:
    """The server refused a connection for want of slots (max_connections, a database's or a role's
    connection limit, or the slots reserved for superusers)."""
    return any(words in str(exc) for words in _OUT_OF_SLOTS)


def take_turns(*engines: Engine, patience: float = SLOT_PATIENCE_SECONDS) -> None:
    """Engines of one process that share its connection slots: when the server refuses one of them a
    connection for want of slots, the others let go of their idle connections and the connect is tried
    again, with backoff, for up to `patience` seconds. A process left fewer slots than it has pools then
    takes turns between them, slower, where one pool holding an idle connection while another was refused
    stopped it for good. (An engine whose pool needs a new connection has no idle one of its own.)"""
    for engine in engines:
        if engine.dialect.name == "postgresql":
            others = [e for e in engines if e is not engine]
            event.listen(engine, "do_connect", partial(_connect_taking_turns, others, patience))


def let_go_of_idle(*engines: Engine) -> None:
    """Close the engines' pooled connections while none is in use (one in use is never taken from its user;
    the next try finds it idle), so that the server's slots they held go to whoever waits for one."""
    from sqlalchemy.pool import QueuePool

    for engine in engines:
        if isinstance(engine.pool, QueuePool) and engine.pool.checkedout() == 0:
            engine.dispose()


def _connect_taking_turns(
    others: list[Engine], patience: float, dialect: Any, _record: Any, cargs: Any, cparams: Any
) -> Any:
    deadline = time.monotonic() + patience
    delay = 0.05
    while True:
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError as exc:
            left = deadline - time.monotonic()
            if not out_of_slots(exc) or left <= 0:
                raise
        let_go_of_idle(*others)
        time.sleep(min(left, delay * (1 + random.random())))  # jittered: processes that wait do not wake together
        delay = min(1.0, delay * 2)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
