"""A full disk under the database during a job is a wait with its reason, not a failure of the images: a real
`tagger worker` writing to a SQLite file on a small tmpfs that fills up says so on the job within a minute
(`tagger jobs show`, the progress lines of `tag --wait`), and the job ends once space is freed, each image
tagged once. Among its images a named pipe, whose read would never return (kind 5), fails alone: that job
ends rather than waits."""

from __future__ import annotations

import io
import os
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tagger.broker.embedded import EmbeddedRedis
from tagger.broker.send import broker_sender
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.schema import JobItem
from tagger.jobs.progress import failures, wait
from tagger.processes import run_tagger
from tagger.worker.local import LocalWorkers
from tests.conftest import make_model, make_settings, submit_keys, write_stills
from tests.support.disks import fill, tmpfs
from tests.support.holds import Holds

pytestmark = pytest.mark.timeout(180)

FULL = "the disk under the database is full: OperationalError: database or disk is full"


def test_a_full_disk_under_sqlite_is_a_wait_with_its_reason_and_the_job_ends_once_space_is_freed(
    tmp_path: Path,
) -> None:
    keys = write_stills(tmp_path / "archive", 8, seed=41)
    os.mkfifo(tmp_path / "archive" / "stills" / "pipe.jpg")  # no writer: open() for reading would block
    with tmpfs(tmp_path / "disk", size="8m") as disk, EmbeddedRedis() as broker:
        database = disk / "tagger.db"
        settings = make_settings(tmp_path, f"sqlite:///{database}", broker_url=broker.url, test_holds=1)
        engine = make_engine(settings.database_url)
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        make_model(settings, sessions)
        holds, log = Holds(settings.var_dir), tmp_path / "workers.log"
        holds.arm("claimed")
        try:
            with LocalWorkers(settings, count=1, log_file=log) as workers:
                job = submit_keys(
                    sessions,
                    broker_sender(settings),
                    [*keys, "stills/pipe.jpg"],
                    storage_url=(tmp_path / "archive").as_uri(),
                ).job_id
                held = holds.wait("claimed", 90, log)  # a batch's attempts are counted; nothing written yet
                # Every page the database has goes into its file, and the write-ahead log to no bytes, so that
                # the next write must grow a file: then the disk fills.
                with sqlite3.connect(database) as conn:
                    assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # not busy
                filler = fill(disk)
                holds.release(held)
                started, shown = time.monotonic(), ""
                while FULL not in shown:
                    assert time.monotonic() - started < 60, shown + "\nworkers log:\n" + log.read_text()[-3000:]
                    time.sleep(0.5)
                    shown = run_tagger(settings, "jobs", "show", job, timeout=60).stdout
                assert "\n  waiting " in shown and ": running: 0 tagged, 0 failed, 0 skipped of 9" in shown, shown

                said: list[str] = []

                def free_once_said(line: str) -> None:  # the progress lines name it: then space is freed
                    said.append(line)
                    if FULL in line:
                        filler.unlink(missing_ok=True)

                final = wait(
                    sessions,
                    job,
                    timeout=90,
                    progress_every=0.5,
                    say=free_once_said,
                    broker_url=broker.url,
                    alive=workers.alive,
                    file=io.StringIO(),
                )
            with sessions() as session:
                items = session.execute(
                    select(JobItem.state, func.count()).where(JobItem.job_id == job).group_by(JobItem.state)
                ).all()
            failed = failures(sessions, job)
        finally:
            engine.dispose()
        assert [line for line in said if line.startswith(f"job {job[:8]}: running, 0/9") and FULL in line], said
        assert not filler.exists(), said
        assert (final.state.value, final.done, final.failed, final.skipped) == ("done_with_failures", 8, 1, 0)
        assert final.waiting is None
        assert failed == [("stills/pipe.jpg", "cannot read stills/pipe.jpg: not a regular file (a named pipe)")]
        assert sorted(items) == [("done", 8), ("failed", 1)]  # each image once: the job's counts and its items agree
    assert "database or disk is full" in log.read_text()
