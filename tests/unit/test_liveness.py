"""Why a job waits, in words: the reason a worker writes for a full disk, and the short form a list and a
progress bar show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tagger.db import make_engine
from tagger_client.contract import JobState
from tagger_client.status import JobStatus


def _sqlite_error(tmp_path: Path, *statements: str) -> OperationalError:
    """The error SQLite gives for the last of `statements`, through the engine a worker uses."""
    engine = make_engine(f"sqlite:///{tmp_path / 'tagger.db'}")
    try:
        with pytest.raises(OperationalError) as raised, engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    return raised.value


def test_sqlite_out_of_pages_is_a_full_disk_and_other_errors_are_not(tmp_path: Path) -> None:
    """A database that may not grow (max_page_count) fails as a full disk does: SQLITE_FULL, 'database or
    disk is full' (the real disk's case is tests/system/test_full_disk.py)."""
    from tagger.worker.liveness import disk_full, reason

    full = _sqlite_error(
        tmp_path,
        "CREATE TABLE t (x BLOB)",
        "PRAGMA max_page_count = 8",
        "INSERT INTO t VALUES (zeroblob(1000000))",
    )
    assert disk_full(full)
    assert reason(full, out_of_connections=False) == (
        "the disk under the database is full: OperationalError: database or disk is full"
    )
    other = _sqlite_error(tmp_path, "SELECT * FROM no_such_table")
    assert not disk_full(other)
    assert reason(other, out_of_connections=False).startswith("the database fails: OperationalError: no such table")


def _job(reason: str | None, waited: timedelta, state: JobState = JobState.RUNNING) -> JobStatus:
    now = datetime.now(UTC)
    return JobStatus(
        id="0123456789abcdef",
        state=state,
        source="keys (8)",
        total=8,
        done=3,
        failed=1,
        skipped=0,
        listing_complete=True,
        error=None,
        created_at=now - timedelta(minutes=10),
        started_at=now - timedelta(minutes=10),
        finished_at=None,
        waiting_reason=reason,
        waiting_since=now - waited if reason else None,
    )


def test_the_short_form_says_how_long_and_what_for_without_the_error() -> None:
    from tagger.jobs.progress import bar_postfix

    full = "the disk under the database is full: OperationalError: database or disk is full"
    waiting = _job(full, timedelta(minutes=3, seconds=5))
    assert waiting.waiting == f"waiting 3 min: {full}"
    assert waiting.waiting_short == "waiting 3 min: the disk under the database is full"
    assert bar_postfix(waiting) == "0.0 img/s, 1 failed, running, waiting 3 min: the disk under the database is full"

    moving = _job(None, timedelta())
    assert moving.waiting_short is None and bar_postfix(moving) == "0.0 img/s, 1 failed, running"
    ended = _job(full, timedelta(seconds=5), JobState.DONE_WITH_FAILURES)
    assert ended.waiting_short is None and "waiting" not in bar_postfix(ended)
