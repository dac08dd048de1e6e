"""PostgreSQL out of disk (SQLSTATE 53100, disk_full) is named as a full disk, as SQLite's is: the error of a
real server whose tablespace, on a small tmpfs, has filled."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tagger.db import make_engine
from tests.support.disks import tmpfs
from tests.support.servers import Postgres


def test_postgresql_out_of_disk_is_a_full_disk_under_the_database(postgres: Postgres) -> None:
    from tagger.worker.liveness import disk_full, reason

    name = f"full_{uuid.uuid4().hex[:10]}"
    url = postgres.create_database(name)
    admin = f"host=127.0.0.1 port={postgres.port} user=postgres dbname={name}"
    # beside the cluster's data, where its user can reach (pytest's tmp_path is root's alone)
    with tmpfs(postgres.base / name, size="1m", owner=postgres.user) as disk:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE TABLESPACE {name} LOCATION '{disk}'")
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text(f"CREATE TABLE filler (x text) TABLESPACE {name}"))
            with pytest.raises(OperationalError) as raised, engine.begin() as conn:
                for _ in range(100):  # 1 MiB of rows, many times over
                    conn.execute(text("INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 100)"))
        finally:
            engine.dispose()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("DROP TABLE IF EXISTS filler")
                conn.execute(f"DROP TABLESPACE {name}")
    assert isinstance(raised.value.orig, psycopg.errors.DiskFull), raised.value
    assert disk_full(raised.value)
    why = reason(raised.value, out_of_connections=False)
    assert why.startswith("the disk under the database is full: OperationalError: could not extend file "), why
    assert "No space left on device" in why
