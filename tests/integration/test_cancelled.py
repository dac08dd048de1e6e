"""Cancelled means cheap: a cancelled or expired job's batches leave the broker's queue, the ones a worker still
meets cost it no database read once it knows the job, a producer stops listing a job that ended, and nothing
of a job that can still run is dropped. Real Redis and SQLite/PostgreSQL, the worker's batch path in-process."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, update

from tagger.broker.config import make_producer_app
from tagger.broker.queues import drop_job_batches
from tagger.broker.send import CelerySender, drop_queued_batches, send_tag_batches
from tagger.db import make_statement_engine
from tagger.db.schema import Job, JobItem, utcnow
from tagger.errors import ConfigError
from tagger.jobs import control
from tagger.jobs.progress import summary
from tagger.settings import Settings
from tagger.worker.context import WorkerContext
from tests.conftest import fill_job, new_job

QUEUE = "tagger.bulk"


@pytest.fixture
def sender(redis_url: str) -> Iterator[CelerySender]:
    """A sender to a broker database of this test's own (db 11, emptied before and after)."""
    url = redis_url.rsplit("/", 1)[0] + "/11"
    app = make_producer_app(Settings(), url)
    with app.connection_for_write() as connection:
        connection.default_channel.client.flushdb()
    yield CelerySender(app)
    with app.connection_for_write() as connection:
        connection.default_channel.client.flushdb()


def _queued(send: CelerySender, queue: str = QUEUE) -> list[tuple[str, list[int]]]:
    """(job, image ids) of each batch message waiting in `queue`, oldest first (kombu pushes on the left)."""
    with send.app.connection_for_write() as connection:
        raw = connection.default_channel.client.lrange(queue, 0, -1)
    return [tuple(json.loads(base64.b64decode(json.loads(m)["body"]))[0]) for m in reversed(raw)]  # type: ignore[misc]


def test_dropping_a_jobs_batches_leaves_every_other_message_in_order(sender: CelerySender) -> None:
    gone, kept = uuid.uuid4().hex, uuid.uuid4().hex
    for n in range(3):  # interleaved: the survivors must keep their order
        send_tag_batches(sender, gone, [[10 * n + 1], [10 * n + 2]], QUEUE)
        send_tag_batches(sender, kept, [[100 + n]], QUEUE)
    sender("tagger.notify_job", [gone], QUEUE)  # another task naming the job: not a batch, it stays
    with sender.app.connection_for_write() as connection:
        client = connection.default_channel.client
        notify, *_, first = client.lrange(QUEUE, 0, -1)  # the newest and the oldest: a batch of `gone`
        again = [json.dumps(json.loads(m), separators=(",", ":")) for m in (first, notify)]
        client.lpush(QUEUE, *again)  # both again, as another JSON encoder writes them: decoded to be sure
        assert drop_job_batches(connection, gone, QUEUE) == 7
        assert drop_job_batches(connection, gone, QUEUE) == 0  # nothing of it is left
        assert drop_job_batches(connection, kept, "tagger.interactive") == 0  # an empty queue
    assert _queued(sender) == [(kept, [100]), (kept, [101]), (kept, [102]), (gone,), (gone,)]


def test_every_batch_of_a_job_can_go(sender: CelerySender) -> None:
    job = uuid.uuid4().hex
    send_tag_batches(sender, job, [[i] for i in range(50)], QUEUE)
    assert drop_queued_batches(sender, job, QUEUE) == 50
    assert _queued(sender) == []
    assert drop_queued_batches(None, job, QUEUE) == 0  # no broker (a local command): nothing to drop


class Checkouts:
    """Database connections taken from an engine's pool: every statement the worker sends takes one."""

    def __init__(self, *engines: Engine) -> None:
        self.count = 0
        for engine in engines:
            event.listen(engine, "checkout", self._taken)

    def _taken(self, *_: Any) -> None:
        self.count += 1


@pytest.fixture
def worker(settings: Settings, sessions) -> Iterator[WorkerContext]:  # type: ignore[no-untyped-def]
    """A worker process's context on the test's database, without a model: the batches here never reach one."""
    engine = make_statement_engine(settings.database_url, pool_size=1)
    with ThreadPoolExecutor(1) as pool:
        yield WorkerContext(settings=settings, engine=engine, sessions=sessions, runtime=None, pool=pool)
    engine.dispose()


def _job(sessions, tmp_path: Path, n: int = 4, *, complete: bool = True) -> tuple[str, list[list[int]]]:  # type: ignore[no-untyped-def]
    """A job of `n` images in batches of two, its listing complete or not (then only its items are in)."""
    from tagger.jobs.producer import enqueue_keys
    from tagger.storage import canonical_url

    url = canonical_url(tmp_path.as_uri())
    job = new_job(sessions, url, batch_size=2).job_id
    keys = [f"stills/{i}.jpg" for i in range(n)]
    if complete:
        ids = sorted(fill_job(sessions, job, keys, url, batch_size=2).values())
    else:
        enqueue_keys(sessions, lambda *a: None, job_id=job, keys=keys, storage_url=url, batch_size=2, queue=QUEUE)
        with sessions() as session:
            ids = sorted(session.scalars(select(JobItem.image_id).where(JobItem.job_id == job)))
    return job, [ids[i : i + 2] for i in range(0, n, 2)]


def test_a_cancelled_jobs_batches_cost_no_database_once_its_worker_knows(
    worker: WorkerContext, sessions, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from tagger.worker.tasks import run_batch

    job, batches = _job(sessions, tmp_path, 6)
    control.cancel(sessions, job)
    checkouts = Checkouts(worker.engine, worker.sessions.kw["bind"])
    assert run_batch(job, batches[0], worker) == {"skipped": 0}  # read once: its images were skipped by the cancel
    read = checkouts.count
    assert read > 0 and job in worker.ended
    assert [run_batch(job, ids, worker) for ids in batches[1:]] == [{"ended": 2}, {"ended": 2}]
    assert checkouts.count == read  # no connection taken, so no statement sent
    with pytest.raises(ConfigError, match="cancelled"):  # and nothing brings it back
        control.retry_failed(sessions, lambda *a: None, job)


def _late_page(sessions, job: str, url: str, keys: list[str]) -> list[int]:  # type: ignore[no-untyped-def]
    """What a producer's page leaves when it commits just after a cancel's own skip: pending images in a
    cancelled job, counted in its total."""
    from tagger.db.images import image_ids, storage_id

    with sessions() as session, session.begin():
        ids = sorted(image_ids(session, storage_id(session, url), keys).values())
        session.add_all(JobItem(job_id=job, image_id=i, state="pending", attempts=0, updated_at=utcnow()) for i in ids)
        session.execute(update(Job).where(Job.id == job).values(total=Job.total + len(ids)))
    return ids


def test_a_job_is_forgotten_only_once_none_of_it_can_be_pending(
    worker: WorkerContext, sessions, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """While its listing runs a cancelled job may still gain a page, and until none of its images is pending
    a batch may still have one to skip: each such batch is read and written in the database, never answered
    unread, and the job adds up at the end."""
    from tagger.jobs.producer import complete_listing
    from tagger.jobs.sources import PassedOver
    from tagger.storage import canonical_url
    from tagger.worker.tasks import run_batch

    job, batches = _job(sessions, tmp_path, 6, complete=False)
    control.cancel(sessions, job)
    assert run_batch(job, batches[0], worker) == {"skipped": 0}
    assert job not in worker.ended  # its listing is not complete
    complete_listing(sessions, lambda *a: None, job, PassedOver())
    late = _late_page(sessions, job, canonical_url(tmp_path.as_uri()), ["stills/late-0.jpg", "stills/late-1.jpg"])
    assert run_batch(job, batches[1], worker) == {"skipped": 0}
    assert job not in worker.ended  # two of its images are pending
    assert run_batch(job, late, worker) == {"skipped": 2}
    assert job in worker.ended and run_batch(job, batches[2], worker) == {"ended": 2}
    totals = summary(sessions, job)
    assert (totals.state.value, totals.total, totals.skipped) == ("cancelled", 8, 8)


def test_an_expired_job_is_forgotten_and_cannot_be_retried(
    worker: WorkerContext, sessions, tmp_path: Path, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    from tagger.worker.app import configure
    from tagger.worker.tasks import run_batch

    configure(worker.settings, redis_url.rsplit("/", 1)[0] + "/11")  # its end is announced through the broker
    job, batches = _job(sessions, tmp_path, 4)
    with sessions() as session, session.begin():
        session.execute(update(Job).where(Job.id == job).values(deadline_at=utcnow() - timedelta(seconds=1)))
    assert run_batch(job, batches[0], worker) == {"skipped": 0}  # the expiry skipped all four
    assert job in worker.ended and run_batch(job, batches[1], worker) == {"ended": 2}
    expired = summary(sessions, job)
    assert (expired.state.value, expired.skipped, expired.error) == ("failed", 4, "job time limit exceeded")
    with pytest.raises(ConfigError, match="time limit"):
        control.retry_failed(sessions, lambda *a: None, job)


def test_a_producer_stops_listing_a_job_cancelled_meanwhile(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The listing ends at the first page after the cancel, what that page added is skipped, no message of it
    is sent, and the job adds up."""
    from tagger.jobs.producer import PAGE, complete_listing, enqueue_keys
    from tagger.jobs.sources import PassedOver

    url = tmp_path.as_uri()
    job_id = new_job(sessions, url, batch_size=64).job_id
    sent: list[list[int]] = []

    def keys() -> Iterator[str]:
        for i in range(5 * PAGE):
            if i == PAGE + 10:  # the second page is being read: the job is cancelled
                control.cancel(sessions, job_id)
            yield f"stills/{i:05d}.jpg"

    def send(task: str, args: list[Any], queue: str) -> None:
        sent.append(args[1])

    added = enqueue_keys(sessions, send, job_id=job_id, keys=keys(), storage_url=url, batch_size=64, queue=QUEUE)
    complete_listing(sessions, send, job_id, PassedOver())
    job = summary(sessions, job_id)
    assert (job.state.value, job.listing_complete, job.total, added) == ("cancelled", True, 2 * PAGE, 2 * PAGE)
    assert job.done + job.failed + job.skipped == job.total == job.skipped
    assert sum(len(ids) for ids in sent) == PAGE  # the first page only: the second's messages never went out
    with sessions() as session:
        count = select(JobItem.state, func.count()).where(JobItem.job_id == job_id).group_by(JobItem.state)
        assert dict(session.execute(count).all()) == {"skipped": 2 * PAGE}
