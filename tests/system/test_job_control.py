"""Jobs people can steer, with a real worker: pause/resume, cancel mid-job, retry the failed, a time limit,
and the database-query producers."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from tagger.broker.config import make_producer_app
from tagger.broker.queues import broker_depths
from tagger.broker.send import celery_sender
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.schema import Image, JobItem, Suggestion, Tag
from tagger.errors import ConfigError
from tagger.jobs import control
from tagger.jobs.producer import submit
from tagger.jobs.progress import summary, wait
from tagger.worker.local import LocalWorkers
from tagger_client.contract import ItemState, JobSpec
from tests.conftest import make_model, make_settings, submit_keys, write_bad_files, write_stills


def _processed(sessions, job_id: str) -> int:  # type: ignore[no-untyped-def]
    job = summary(sessions, job_id)
    return job.done + job.failed


def _item_states(sessions, job_id: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        rows = session.execute(
            select(JobItem.state, func.count()).where(JobItem.job_id == job_id).group_by(JobItem.state)
        ).all()
    return {str(state): int(n) for state, n in rows}


def _stable(value, quiet: float, timeout: float = 90) -> int:  # type: ignore[no-untyped-def]
    """The value once it has not changed for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = value(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the value never settled"
        time.sleep(0.1)
        now = value()
        if now != last:
            last, since = now, time.monotonic()
    return int(last)


def _until(predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_pause_resume_cancel_retry_time_limit_and_queries(postgres, redis_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, postgres.create_database(f"ctl_{uuid.uuid4().hex[:10]}"), broker_url=redis_url)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions)
    archive = tmp_path / "archive"
    keys = write_stills(archive, 400, seed=4)
    bad = write_bad_files(archive)
    send = celery_sender(make_producer_app(settings, redis_url))
    url = archive.as_uri()

    with LocalWorkers(settings, count=1, log_file=tmp_path / "workers.log") as workers:
        job = submit_keys(sessions, send, keys, storage_url=url, batch_size=2).job_id
        _until(lambda: _processed(sessions, job) >= 20)
        assert control.pause(sessions, job) == "paused"
        # The batch in flight finishes, then nothing moves for longer than the 2 s pause re-check,
        # however long that batch takes on a loaded machine: paused batches stay in the broker.
        held = _stable(lambda: _processed(sessions, job), quiet=3.0)
        assert held < len(keys)
        assert control.resume(sessions, job) == "running"
        _until(lambda: _processed(sessions, job) >= held + 20)
        assert control.cancel(sessions, job) == "cancelled"
        at_cancel = summary(sessions, job)  # it adds up at once, not as the workers next meet its batches
        assert at_cancel.skipped > 0 and at_cancel.done + at_cancel.failed + at_cancel.skipped == len(keys)
        assert _item_states(sessions, job).get("pending", 0) == 0
        assert _item_states(sessions, job)["skipped"] == at_cancel.skipped
        _stable(lambda: _processed(sessions, job), quiet=3.0)  # the batch in flight and the queued ones write nothing
        cancelled = summary(sessions, job)
        assert (cancelled.state.value, cancelled.done, cancelled.skipped) == (
            "cancelled",
            at_cancel.done,
            at_cancel.skipped,
        )
        with pytest.raises(ConfigError, match="cancelled"):
            control.resume(sessions, job)

        # Retry the failed: three bad files fail, get mended, and a retry tags them.
        broken = submit_keys(sessions, send, list(bad), storage_url=url, batch_size=8).job_id
        first = wait(sessions, broken, timeout=60, show_progress=False, alive=workers.alive)
        assert (first.state.value, first.failed) == ("done_with_failures", 3)
        for key in bad:
            (archive / key).write_bytes((archive / keys[0]).read_bytes())
        assert control.retry_failed(sessions, send, broken) == 3
        again = wait(sessions, broken, timeout=60, show_progress=False, alive=workers.alive)
        assert (again.state.value, again.done, again.failed) == ("done", 3, 0)

        # A time limit: once past it, the job fails and its remaining batches are skipped.
        late = submit_keys(sessions, send, keys[:40], storage_url=url, batch_size=2, time_limit=0.001).job_id
        expired = wait(sessions, late, timeout=60, show_progress=False, alive=workers.alive)
        assert expired.state.value == "failed" and expired.skipped > 0
        assert expired.done + expired.failed + expired.skipped == 40 and "pending" not in _item_states(sessions, late)

        # Database queries. Images never tagged: the cancelled job's skipped ones.
        with sessions() as session:
            never_tagged = session.scalar(select(func.count()).where(Image.model_version_id.is_(None)))
        untagged = submit(sessions, send, JobSpec.new(query="untagged", batch_size=16), settings)
        result = wait(sessions, untagged.job_id, timeout=120, show_progress=False, alive=workers.alive)
        assert (result.state.value, result.total, result.done) == ("done", never_tagged, never_tagged)
        # Images lacking a `night` suggestion from the active model: take it away from five of them.
        with sessions() as session, session.begin():
            night = session.scalar(select(Tag.id).where(Tag.name == "night"))
            five = list(session.scalars(select(Image.id).order_by(Image.id).limit(5)))
            session.execute(delete(Suggestion).where(Suggestion.tag_id == night, Suggestion.image_id.in_(five)))
        missing = submit(sessions, send, JobSpec.new(query="missing", tags=["night"], batch_size=16), settings)
        result = wait(sessions, missing.job_id, timeout=120, show_progress=False, alive=workers.alive)
        assert (result.state.value, result.total) == ("done", 5)
        assert control.retry_failed(sessions, send, missing.job_id) == 0

        # A big job cancelled: its queued batches leave the broker with the cancel, so a job submitted after it
        # starts at once (not after a thousand skips), and finishes whole.
        absent = [f"stills/absent-{i:04d}.jpg" for i in range(1000)]
        big = submit_keys(sessions, send, absent, storage_url=url, batch_size=1).job_id
        assert control.cancel(sessions, big, send=send) == "cancelled"
        assert broker_depths(redis_url).waiting["tagger.bulk"] == 0
        small = submit_keys(sessions, send, keys[:8], storage_url=url, batch_size=4).job_id
        after = wait(sessions, small, timeout=60, show_progress=False, alive=workers.alive)
        cancelled_at = summary(sessions, big).finished_at
        assert (after.state.value, after.done) == ("done", 8) and after.started_at and cancelled_at
        assert (after.started_at - cancelled_at).total_seconds() < 2.0
    with sessions() as session:
        never = session.scalar(
            select(func.count()).select_from(JobItem).where(JobItem.job_id == job, JobItem.state == ItemState.SKIPPED)
        )
    assert never == cancelled.skipped
    engine.dispose()
