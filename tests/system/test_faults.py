"""Faults injected for real: killed processes, a poison image, a pickle message, restarts of Redis and
PostgreSQL, SIGTERM, and concurrent batches. The promise: every image ends tagged exactly once or
failed with a reason, and every job's counters match its items."""

from __future__ import annotations

import base64
import json
import os
import pickle
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select, text

from tagger.broker.config import make_producer_app
from tagger.broker.embedded import EmbeddedRedis
from tagger.broker.send import celery_sender
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.schema import Image, Job, JobItem, Suggestion
from tagger.jobs.control import reconcile
from tagger.jobs.progress import summary, wait
from tagger.settings import Settings
from tagger.worker.local import LocalWorkers
from tagger.worker.sink import Refused, Tagged, record_batch
from tagger_client.contract import QUEUE_BULK, ItemState
from tests.conftest import fill_job, make_model, make_settings, new_job, submit_keys, write_stills
from tests.support.holds import Holds
from tests.support.waiting import children


@dataclass
class Rig:
    settings: Settings
    sessions: Any
    keys: list[str]
    url: str
    send: Any
    log: Path

    def submit(self, keys: list[str] | None = None, batch_size: int = 4) -> str:
        job = submit_keys(self.sessions, self.send, keys or self.keys, storage_url=self.url, batch_size=batch_size)
        return job.job_id

    def processed(self, job_id: str) -> int:
        job = summary(self.sessions, job_id)
        return job.done + job.failed

    def until(self, predicate: Any, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "condition not reached; workers log:\n" + self.log.read_text()[-3000:]
            time.sleep(0.05)

    def assert_exact(self, job_id: str, *, done: int, failed: int = 0) -> None:
        """Counters match item states, every done image is tagged by one version, and nothing is pending."""
        job = summary(self.sessions, job_id)
        assert (job.done, job.failed, job.total) == (done, failed, done + failed), job
        with self.sessions() as session:
            states = dict(
                session.execute(
                    select(JobItem.state, func.count()).where(JobItem.job_id == job_id).group_by(JobItem.state)
                ).all()
            )
            assert states.get(ItemState.DONE.value, 0) == done and states.get(ItemState.FAILED.value, 0) == failed
            assert states.get(ItemState.PENDING.value, 0) == 0
            versions = session.execute(
                select(func.count(func.distinct(Suggestion.model_version_id)))
                .join(JobItem, JobItem.image_id == Suggestion.image_id)
                .where(JobItem.job_id == job_id)
            ).scalar_one()
            assert versions == 1


@pytest.fixture
def rig(postgres, redis_url: str, tmp_path: Path) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    settings = make_settings(
        tmp_path,
        postgres.create_database(f"flt_{uuid.uuid4().hex[:10]}"),
        broker_url=redis_url,
        visibility_timeout=10,
        test_holds=1,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions)
    archive = tmp_path / "archive"
    keys = write_stills(archive, 120, seed=21)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # no leftovers from other tests' queues
    client.close()
    yield Rig(
        settings,
        sessions,
        keys,
        archive.as_uri(),
        celery_sender(make_producer_app(settings, redis_url)),
        tmp_path / "workers.log",
    )
    engine.dispose()


def _attempts(rig: Rig, job_id: str) -> dict[int, tuple[str, int]]:
    """image id -> (state, attempts) of every item of the job."""
    with rig.sessions() as session:
        rows = session.execute(
            select(JobItem.image_id, JobItem.state, JobItem.attempts).where(JobItem.job_id == job_id)
        ).all()
    return {image_id: (state, attempts) for image_id, state, attempts in rows}


def test_kill_9_of_a_pool_process_mid_batch_is_redelivered(rig: Rig) -> None:
    """The batch in a pool process killed at `fetched` comes back at once (task_reject_on_worker_lost)."""
    holds = Holds(rig.settings.var_dir)
    holds.arm("fetched")
    with LocalWorkers(rig.settings, count=1, log_file=rig.log) as workers:
        job = rig.submit()
        held = holds.wait("fetched", log=rig.log)
        assert held.pid in children(workers.procs[0].pid)  # a pool process, not the worker itself
        os.kill(held.pid, signal.SIGKILL)
        holds.release(held)
        result = wait(rig.sessions, job, timeout=120, show_progress=False, alive=workers.alive)
    assert result.state.value == "done"
    rig.assert_exact(job, done=len(rig.keys))
    items = _attempts(rig, job)
    # The killed delivery counted one attempt, its redelivery the second; every other image took one.
    assert {items[i] for i in held.image_ids} == {("done", 2)}
    assert {v for i, v in items.items() if i not in held.image_ids} == {("done", 1)}
    assert "WorkerLostError" in rig.log.read_text()


def _unacknowledged(rig: Rig) -> set[str]:
    """Task ids of the messages the broker holds as delivered but not acknowledged (kombu's `unacked` hash)."""
    client = redis.Redis.from_url(rig.settings.broker_url)
    try:
        return {json.loads(raw)[0]["headers"]["id"] for raw in client.hvals("unacked")}
    finally:
        client.close()


@dataclass
class Relay:
    """The kill-at-a-stage tests in turn, on one database, model, broker and holds folder of their own: the
    worker that recovered one stage's job is left running, idle, to be the next stage's victim (killed as a
    fresh one would be), so the four stages start five workers instead of eight. Each stage tags its own
    archive (its own storage, so its own images), and its message is its own."""

    settings: Settings
    sessions: Any
    send: Any
    logs: Path
    standby: LocalWorkers | None = None
    started: int = 0

    def rig(self, tmp_path: Path) -> Rig:
        archive = tmp_path / "archive"
        keys = write_stills(archive, 120, seed=21)
        return Rig(self.settings, self.sessions, keys, archive.as_uri(), self.send, self.logs / "worker-1.log")

    def start(self) -> LocalWorkers:
        self.started += 1
        return LocalWorkers(self.settings, count=1, log_file=self.logs / f"worker-{self.started}.log").start()

    def victim(self) -> LocalWorkers:
        """The idle worker the last stage left, or a new one."""
        worker, self.standby = self.standby, None
        if worker is not None and worker.alive():
            return worker
        if worker is not None:
            worker.stop()
        return self.start()


@pytest.fixture(scope="module")
def relay(postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("relay")
    broker = EmbeddedRedis().start()  # its own: the idle worker must never take another test's messages
    settings = make_settings(
        root,
        postgres.create_database(f"rly_{uuid.uuid4().hex[:10]}"),
        broker_url=broker.url,
        visibility_timeout=10,
        test_holds=1,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions)
    relay = Relay(settings, sessions, celery_sender(make_producer_app(settings, broker.url)), root)
    yield relay
    if relay.standby is not None:
        relay.standby.stop()
    engine.dispose()
    broker.stop()


@pytest.mark.parametrize("stage", ["claimed", "fetched", "inferred", "written"])
def test_a_worker_killed_at_any_stage_loses_and_duplicates_nothing(relay: Relay, tmp_path: Path, stage: str) -> None:
    """Kill the whole worker (main process and pool) with a batch held at each stage of its pipeline: its
    message is still unacknowledged there, even once its write has committed (`written`), and comes back
    after the visibility timeout to another worker, which tags what was not written and rewrites nothing."""
    rig = relay.rig(tmp_path)
    holds = Holds(rig.settings.var_dir)
    holds.arm(stage)
    worker = relay.victim()  # idle until this job is sent: the first batch it takes stops at `stage`
    job = rig.submit(rig.keys[:40])
    held = holds.wait(stage, log=worker.log_file)
    assert held.task_id in _unacknowledged(rig), "acknowledged before its batch was written"
    os.killpg(worker.procs[0].pid, signal.SIGKILL)
    worker.stop()
    holds.release(held)
    before = _attempts(rig, job)
    expected = ("done", 1) if stage == "written" else ("pending", 1)
    assert {before[i] for i in held.image_ids} == {expected}
    with rig.sessions() as session:
        written_before = session.scalar(
            select(func.count()).select_from(Suggestion).where(Suggestion.image_id.in_(held.image_ids))
        )
    second = relay.start()
    second_log = rig.log = second.log_file  # type: ignore[assignment]
    try:
        received = f"tagger.tag_batch[{held.task_id}] received"
        rig.until(lambda: received in second_log.read_text(), timeout=60)
        result = wait(rig.sessions, job, timeout=120, show_progress=False, alive=second.alive)
        rig.until(lambda: not _unacknowledged(rig), timeout=30)  # the last batch's acknowledgement
    except BaseException:
        second.stop()
        raise
    relay.standby = second  # idle now: the next stage's victim
    after = _attempts(rig, job)
    # written: the redelivery found nothing pending and wrote nothing; else it tagged them, a 2nd attempt
    assert {after[i] for i in held.image_ids} == {("done", 1) if stage == "written" else ("done", 2)}
    with rig.sessions() as session:
        written_after = session.scalar(
            select(func.count()).select_from(Suggestion).where(Suggestion.image_id.in_(held.image_ids))
        )
    assert stage != "written" or written_after == written_before
    assert result.state.value == "done"
    rig.assert_exact(job, done=40)
    assert not _unacknowledged(rig)


def _tagged(rig: Rig, image_ids: list[int]) -> dict[int, list[tuple[int, float, Any]]]:
    """image id -> its suggestion rows (tag, probability, written at), for images marked tagged (a version
    and a time on the image row): what a batch's write leaves behind."""
    with rig.sessions() as session:
        marked = set(
            session.scalars(
                select(Image.id).where(
                    Image.id.in_(image_ids), Image.model_version_id.is_not(None), Image.tagged_at.is_not(None)
                )
            )
        )
        rows = session.execute(
            select(Suggestion.image_id, Suggestion.tag_id, Suggestion.probability, Suggestion.created_at)
            .where(Suggestion.image_id.in_(image_ids))
            .order_by(Suggestion.image_id, Suggestion.tag_id)
        ).all()
    out: dict[int, list[tuple[int, float, Any]]] = {i: [] for i in marked}
    for image_id, tag_id, probability, created_at in rows:
        out.setdefault(image_id, []).append((tag_id, probability, created_at))
    return out


def _writes_waiting_on_a_lock(rig: Rig) -> int:
    """Sessions whose statement is the sink's write, waiting for a row lock (pg_stat_activity)."""
    with rig.sessions() as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%claimed AS%' AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        )


def test_a_worker_killed_mid_commit_leaves_its_batch_written_whole_and_acknowledged_once(
    rig: Rig, tmp_path: Path
) -> None:
    """Kill the worker while its batch's write is inside the database: the statement is held on the job's
    row lock, so it has begun and not committed. The server finishes the orphaned statement, which commits
    with no one left to acknowledge the message: the batch is written whole, its message comes back to
    another worker, which finds nothing pending and writes nothing, and the job ends exact. (A statement
    terminated instead rolls back whole: the `inferred` kill above covers a batch left pending.) The
    server must not cancel the orphan on its own: `client_connection_check_interval` stays 0 (the default)."""
    holds = Holds(rig.settings.var_dir)
    job = rig.submit(rig.keys[:40])
    holds.arm("inferred")
    worker = LocalWorkers(rig.settings, count=1, log_file=rig.log).start()
    held = holds.wait("inferred", log=rig.log)
    blocker = make_engine(rig.settings.database_url)
    try:
        with blocker.connect() as conn:
            locked = conn.begin()
            conn.execute(text("SELECT 1 FROM jobs WHERE id = :job FOR UPDATE"), {"job": job})
            holds.release(held)
            rig.until(lambda: _writes_waiting_on_a_lock(rig) == 1, timeout=30)
            assert held.task_id in _unacknowledged(rig)
            assert {_attempts(rig, job)[i] for i in held.image_ids} == {("pending", 1)}  # begun, not committed
            os.killpg(worker.procs[0].pid, signal.SIGKILL)
            worker.stop()
            locked.commit()
    finally:
        blocker.dispose()
    # The lock is granted before the orphan commits: wait for its commit, the whole batch at once.
    rig.until(lambda: {_attempts(rig, job)[i] for i in held.image_ids} == {("done", 1)}, timeout=30)
    written = _tagged(rig, held.image_ids)
    assert set(written) == set(held.image_ids)  # every image of the batch marked tagged, its rows with it
    second_log = tmp_path / "after.log"
    with LocalWorkers(rig.settings, count=1, log_file=second_log) as second:
        received = f"tagger.tag_batch[{held.task_id}] received"
        rig.until(lambda: received in second_log.read_text(), timeout=60)  # the message came back
        result = wait(rig.sessions, job, timeout=120, show_progress=False, alive=second.alive)
        rig.until(lambda: not _unacknowledged(rig), timeout=30)
    assert {_attempts(rig, job)[i] for i in held.image_ids} == {("done", 1)}  # the redelivery wrote nothing
    assert _tagged(rig, held.image_ids) == written
    assert result.state.value == "done"
    rig.assert_exact(job, done=40)


def test_a_threads_pool_crash_returns_its_batches_split_one_image_per_message(rig: Rig, tmp_path: Path) -> None:
    holds = Holds(rig.settings.var_dir)
    holds.arm("inferred")
    threads = rig.settings.replace(worker_pool="threads", worker_concurrency=2)
    first = LocalWorkers(threads, count=1, log_file=rig.log).start()
    job = rig.submit()
    held = holds.wait("inferred", log=rig.log)
    assert held.pid == first.procs[0].pid  # one process: the crash takes every batch in flight with it
    os.killpg(first.procs[0].pid, signal.SIGKILL)
    first.stop()
    holds.release(held)
    second_log = tmp_path / "second.log"
    with LocalWorkers(rig.settings, count=1, log_file=second_log) as second:
        result = wait(rig.sessions, job, timeout=120, show_progress=False, alive=second.alive)
    assert result.state.value == "done"
    rig.assert_exact(job, done=len(rig.keys))
    assert {_attempts(rig, job)[i] for i in held.image_ids} == {("done", 2)}
    assert f"'split': {len(held.image_ids)}" in second_log.read_text()  # redelivered, then one image per message


def test_a_poison_image_is_given_up_after_bounded_attempts_and_its_batch_is_tagged(rig: Rig, tmp_path: Path) -> None:
    """A decoder crash that kills the process every time: the image fails with a reason, the rest are tagged."""
    archive = Path(rig.url.removeprefix("file://"))
    (archive / "stills" / "poison.jpg").write_bytes(b"POISON" + (archive / rig.keys[0]).read_bytes())
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import os, signal\n"
        "from tagger.model import preprocess\n"
        "_real = preprocess.Preprocess.__call__\n"
        "def _crash_on_poison(self, data, *a, **k):\n"
        "    if data.startswith(b'POISON'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return _real(self, data, *a, **k)\n"
        "preprocess.Preprocess.__call__ = _crash_on_poison\n"
    )
    keys = rig.keys[:11] + ["stills/poison.jpg"]
    env = {"PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with LocalWorkers(rig.settings, count=1, log_file=rig.log, extra_env=env) as workers:
        job = rig.submit(keys)
        result = wait(rig.sessions, job, timeout=180, show_progress=False, alive=workers.alive)
    assert (result.state.value, result.done, result.failed) == ("done_with_failures", 11, 1)
    with rig.sessions() as session:
        attempts, error = session.execute(
            select(JobItem.attempts, JobItem.error)
            .join(Image, Image.id == JobItem.image_id)
            .where(JobItem.job_id == job, Image.key == "stills/poison.jpg")
        ).one()
    assert attempts == 5 and error.startswith("gave up after 5 attempts") and "died" in error
    rig.assert_exact(job, done=11, failed=1)


def test_a_pickle_message_is_rejected_and_nothing_runs(rig: Rig, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    body = pickle.dumps(((), {"job_id": "0" * 32, "keys": [Exploit()]}, {}))
    task_id = str(uuid.uuid4())
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "binary",
        "content-type": "application/x-python-serialize",
        "headers": {"lang": "py", "task": "tagger.tag_batch", "id": task_id, "root_id": task_id, "retries": 0},
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUE_BULK},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    broker = redis.Redis.from_url(rig.settings.broker_url)
    broker.lpush(QUEUE_BULK, json.dumps(envelope))
    with LocalWorkers(rig.settings, count=1, log_file=rig.log) as workers:
        rig.until(lambda: broker.llen(QUEUE_BULK) == 0)
        job = rig.submit(rig.keys[:8])  # the worker is unharmed and keeps serving JSON messages
        result = wait(rig.sessions, job, timeout=60, show_progress=False, alive=workers.alive)
    broker.close()
    assert not marker.exists()
    assert result.state.value == "done"
    assert "application/x-python-serialize" in rig.log.read_text()  # refused as a content type it does not accept


def test_redis_restart_loses_messages_and_reconcile_requeues_them(postgres, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broker = EmbeddedRedis().start()
    settings = make_settings(tmp_path, postgres.create_database(f"rds_{uuid.uuid4().hex[:10]}"), broker_url=broker.url)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions)
    keys = write_stills(tmp_path / "archive", 120, seed=22)
    send = celery_sender(make_producer_app(settings, broker.url))
    log = tmp_path / "workers.log"
    try:
        with LocalWorkers(settings, count=1, log_file=log) as workers:
            job = submit_keys(sessions, send, keys, storage_url=(tmp_path / "archive").as_uri()).job_id
            deadline = time.monotonic() + 60
            while summary(sessions, job).done < 12 and time.monotonic() < deadline:
                time.sleep(0.05)
            broker.stop()  # not persistent: the queued batches are gone
            time.sleep(2)
            broker = EmbeddedRedis(port=broker.port).start()
            time.sleep(3)  # the worker reconnects by itself
            assert workers.alive() and not summary(sessions, job).state.finished
            requeued = reconcile(sessions, celery_sender(make_producer_app(settings, broker.url)), job)
            result = wait(sessions, job, timeout=120, show_progress=False, alive=workers.alive)
    finally:
        broker.stop()
    assert requeued[job] > 0
    assert (result.state.value, result.done, result.failed) == ("done", 120, 0)
    engine.dispose()


def test_postgres_down_mid_job_is_waited_out(postgres, rig: Rig) -> None:  # type: ignore[no-untyped-def]
    with LocalWorkers(rig.settings, count=1, log_file=rig.log) as workers:
        job = rig.submit()
        rig.until(lambda: rig.processed(job) >= 12)
        os.killpg(postgres.proc.pid, signal.SIGINT)  # fast shutdown: connections are cut
        postgres.proc.wait(30)
        postgres.stop()
        time.sleep(12)  # several retries, each backing off longer
        assert workers.alive()
        postgres.start()
        result = wait(rig.sessions, job, timeout=180, show_progress=False, alive=workers.alive)
    assert result.state.value == "done"
    rig.assert_exact(job, done=len(rig.keys))
    # The outage was waited out, not charged to the images: at most the one delivery cut off mid-write
    # counted a second attempt.
    assert max(attempts for _, attempts in _attempts(rig, job).values()) <= 2


def test_sigterm_finishes_the_batch_in_flight_and_sigquit_does_not(rig: Rig) -> None:
    holds = Holds(rig.settings.var_dir)
    holds.arm("fetched")
    warm = LocalWorkers(rig.settings, count=1, log_file=rig.log).start()
    job = rig.submit(batch_size=8)
    held = holds.wait("fetched", log=rig.log)
    warm.procs[0].send_signal(signal.SIGTERM)  # warm: the batch in flight completes, then the worker exits
    rig.until(lambda: "Warm shutdown" in rig.log.read_text())
    holds.release(held)
    assert warm.procs[0].wait(60) == 0
    warm.stop()
    items = _attempts(rig, job)
    assert {items[i] for i in held.image_ids} == {("done", 1)}  # written by the delivery that held it
    assert summary(rig.sessions, job).done < len(rig.keys)  # and nothing new was taken after the signal

    holds.arm("fetched")
    cold = LocalWorkers(rig.settings, count=1, log_file=rig.log).start()
    stopped = holds.wait("fetched", log=rig.log)
    cold.procs[0].send_signal(signal.SIGQUIT)  # cold: stop now; the unacknowledged batch goes back
    cold.procs[0].wait(60)
    cold.stop()
    holds.release(stopped)
    assert {_attempts(rig, job)[i] for i in stopped.image_ids} == {("pending", 1)}
    with LocalWorkers(rig.settings, count=1, log_file=rig.log) as last:
        result = wait(rig.sessions, job, timeout=120, show_progress=False, alive=last.alive)
    assert result.state.value == "done"
    rig.assert_exact(job, done=len(rig.keys))
    assert {_attempts(rig, job)[i] for i in stopped.image_ids} == {("done", 2)}


def test_fifty_batches_finishing_at_once_keep_exact_counters(postgres, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, postgres.create_database(f"cnt_{uuid.uuid4().hex[:10]}"))
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    version = make_model(settings, sessions)
    with sessions() as session:
        from tagger import registry

        version_id, tag_id = registry.get(session, version).id, registry.tag_ids(session, ["night"])["night"]
    keys = [f"k/{i:04d}.jpg" for i in range(200)]
    job = new_job(sessions, tmp_path.as_uri()).job_id
    ids = fill_job(sessions, job, keys, tmp_path.as_uri())
    batches = [[ids[k] for k in keys[i : i + 4]] for i in range(0, 200, 4)]
    closed: list[bool] = []

    def finish(batch: list[int]) -> None:
        barrier.wait()
        counts = record_batch(
            engine,
            job_id=job,
            model_version_id=version_id,
            tagged=[Tagged(i, [(tag_id, 0.9)]) for i in batch[:3]],
            refused=[Refused(batch[3], "corrupt")],
        )
        closed.append(counts.closed)

    threads = [threading.Thread(target=finish, args=(b,)) for b in batches + batches[:10]]  # 10 redeliveries too
    barrier = threading.Barrier(len(threads))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = summary(sessions, job)
    assert (final.done, final.failed, final.state.value) == (150, 50, "done_with_failures")
    assert closed.count(True) == 1  # exactly one batch ended the job (and would notify)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Suggestion)) == 150
        assert session.scalar(select(Job.finished_at).where(Job.id == job)) is not None
    engine.dispose()
