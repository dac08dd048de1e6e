"""A process short of connection slots takes turns between its pools: on a real PostgreSQL whose role may hold
one connection, the worker's two engines (the hot path's and the ORM's) both work, one after the other."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tagger.db import make_engine, make_statement_engine
from tagger.db.engine import run_statement, take_turns
from tests.support.servers import Postgres


@pytest.fixture
def one_slot(postgres: Postgres) -> Iterator[str]:
    """A database URL whose role PostgreSQL lets hold one connection at a time."""
    name = f"slot_{uuid.uuid4().hex[:10]}"
    url = postgres.create_database(name)
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f"CREATE ROLE {name} LOGIN CONNECTION LIMIT 1")
    yield url.replace("//postgres@", f"//{name}@")


def test_a_process_with_one_slot_takes_turns_between_its_engines(one_slot: str) -> None:
    statements = make_statement_engine(one_slot, pool_size=1)
    orm = make_engine(one_slot, pool_size=1, max_overflow=1)
    take_turns(statements, orm, patience=1.0)
    try:
        with orm.connect() as conn:  # the ORM's connection, then idle in its pool
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        assert run_statement(statements, "SELECT 2", {}) == [(2,)]  # the ORM's idle one was let go for it
        with orm.connect() as conn:
            assert conn.execute(text("SELECT 3")).scalar_one() == 3  # and back
            started = time.monotonic()
            with pytest.raises(OperationalError, match="too many connections for role"):
                run_statement(statements, "SELECT 4", {})  # a connection in use is never taken: it waits, then fails
            assert 1.0 <= time.monotonic() - started < 4
    finally:
        statements.dispose()
        orm.dispose()


def test_without_turns_an_idle_connection_in_one_pool_refuses_the_other(one_slot: str) -> None:
    """What `take_turns` prevents: the process holds its one slot idle in one pool while the other is refused."""
    statements = make_statement_engine(one_slot, pool_size=1)
    orm = make_engine(one_slot, pool_size=1, max_overflow=1)
    try:
        with orm.connect() as conn:
            conn.execute(text("SELECT 1"))
        with pytest.raises(OperationalError, match="too many connections for role"):
            run_statement(statements, "SELECT 2", {})
    finally:
        statements.dispose()
        orm.dispose()
