"""Hot swap with real worker processes: a new model mid-job, a rollback, and a corrupt artifact refused.

Workers are never restarted: the same processes serve A, then B, then A again, and refuse C.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tagger import promotion, registry
from tagger.broker.config import make_producer_app
from tagger.broker.send import celery_sender
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.schema import Image, JobItem, ModelVersion, Suggestion, Tag
from tagger.errors import ArtifactError
from tagger.jobs.producer import submit
from tagger.jobs.progress import summary, wait
from tagger.settings import Settings
from tagger.worker.local import LocalWorkers
from tagger_client.contract import ItemState, JobSpec
from tests.conftest import make_model, make_settings, submit_keys, write_stills
from tests.support.holds import Holds


def _wait_for(sessions, job_id: str, processed: int, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = summary(sessions, job_id)
        if job.done + job.failed >= processed or job.state.finished:
            return
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not reach {processed} processed images in {timeout}s")


def _pool(workers: list[int], *, expected: int, timeout: float = 60) -> set[int]:
    """The pool processes (children) of the worker processes, once each has `expected // len` of them."""
    deadline = time.monotonic() + timeout
    while True:
        children = set()
        for pid in workers:
            path = Path(f"/proc/{pid}/task/{pid}/children")
            children |= {int(c) for c in path.read_text().split()} if path.exists() else set()
        if len(children) >= expected or time.monotonic() > deadline:
            return children
        time.sleep(0.1)


def _items(sessions, job_id: str) -> list[tuple[int, str, int | None, object]]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return [
            tuple(r)  # type: ignore[misc]
            for r in session.execute(
                select(JobItem.image_id, JobItem.state, JobItem.model_version_id, JobItem.updated_at)
                .where(JobItem.job_id == job_id)
                .order_by(JobItem.updated_at)
            ).all()
        ]


def test_models_swap_and_roll_back_mid_job_and_a_corrupt_one_is_refused(
    postgres,  # type: ignore[no-untyped-def]
    redis_url: str,
    tmp_path: Path,
) -> None:
    settings: Settings = make_settings(
        tmp_path,
        postgres.create_database(f"swap_{uuid.uuid4().hex[:10]}"),
        broker_url=redis_url,
        batch_size=2,
        test_holds=1,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    a = make_model(settings, sessions, seed=0, favour="night")  # A suggests `night` for every image
    b = make_model(settings, sessions, seed=1, favour="circle", activate=False)  # and B `circle`
    c = make_model(settings, sessions, seed=2, activate=False)
    weights = tmp_path / "models" / c / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-100:] = bytes(100)  # tampered after registration: the checksum no longer matches
    weights.write_bytes(bytes(blob))
    with sessions() as session:
        ids = {v: registry.get(session, v).id for v in (a, b, c)}

    archive = tmp_path / "archive"
    keys = write_stills(archive, 600, seed=11)
    send = celery_sender(make_producer_app(settings, redis_url))
    log = tmp_path / "workers.log"
    # TAGGER_TORCH_THREADS=1, where the default would give each worker all the cores it sees (>= 2 in CI).
    with LocalWorkers(settings.replace(torch_threads=1), count=2, log_file=log) as workers:
        pids = [p.pid for p in workers.procs]
        pool = _pool(pids, expected=2)
        holds = Holds(settings.var_dir)
        holds.arm("inferred")
        job = submit_keys(sessions, send, keys, storage_url=archive.as_uri(), batch_size=2)
        _wait_for(sessions, job.job_id, 100)
        # A batch inferred by A is held before its write while both workers swap to B: it must be
        # recorded as A's, the version that inferred it (its rows carry A's `night`).
        held = holds.wait("inferred", log=log)
        switched = promotion.activate(sessions, b, broker_url=settings.broker_url)
        assert switched.previous == a and switched.listeners >= 1  # workers heard the broadcast
        deadline = time.monotonic() + 60
        while log.read_text().count(f"serving model {b}") < 2:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        holds.release(held)
        _wait_for(sessions, job.job_id, 350)
        rolled = promotion.rollback(sessions, broker_url=settings.broker_url)
        assert (rolled.previous, rolled.active) == (b, a)
        result = wait(sessions, job.job_id, timeout=180, show_progress=False, alive=workers.alive)

        # A corrupt artifact is refused at the door...
        with pytest.raises(ArtifactError, match="checksum"):
            promotion.activate(sessions, c, broker_url=settings.broker_url)
        # ...and by the workers when it is activated behind the door's back: the old model keeps serving.
        promotion.activate(sessions, c, broker_url=settings.broker_url, check=False)
        second = submit_keys(sessions, send, keys[:30], storage_url=archive.as_uri(), batch_size=2)
        after = wait(sessions, second.job_id, timeout=120, show_progress=False, alive=workers.alive)

        items = _items(sessions, job.job_id)
        second_ids = {i for i, _, _, _ in _items(sessions, second.job_id)}
        first_only = {image_id: version for image_id, _, version, _ in items if image_id not in second_ids}
        with sessions() as session:
            tagged = session.execute(
                select(Suggestion.image_id, Suggestion.model_version_id)
                .distinct()
                .where(Suggestion.image_id.in_(list(first_only)))
            ).all()
        # After the rollback, images B tagged are stale: `tagger tag --stale` re-queues exactly those.
        with sessions() as session:
            stale_before = session.scalar(select(func.count()).where(Image.model_version_id == ids[b]))
        stale = submit(sessions, send, JobSpec.new(query="stale", batch_size=8), settings)
        restaled = wait(sessions, stale.job_id, timeout=120, show_progress=False, alive=workers.alive)
        with sessions() as session:
            versions_now = set(session.scalars(select(Image.model_version_id).distinct()))

        assert workers.alive() and [p.pid for p in workers.procs] == pids
        assert _pool(pids, expected=2) == pool  # the same pool processes served A, B, A and refused C
    assert stale_before and (restaled.total, restaled.done, restaled.failed) == (stale_before, stale_before, 0)
    assert versions_now == {ids[a]}

    assert (result.state.value, result.done, result.failed, result.total) == ("done", 600, 0, 600)
    assert len(items) == 600 and all(state == ItemState.DONE for _, state, _, _ in items)
    versions = [v for _, _, v, _ in items]
    assert set(versions) == {ids[a], ids[b]}
    # In time order: A first, then B, then A again after the rollback.
    runs = [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]]
    assert runs[0] == ids[a] and runs[-1] == ids[a] and ids[b] in runs
    # No batch mixes versions: every row a version wrote carries that version's own tag, so a batch
    # inferred by one version and recorded as the other would show as (B, night) or (A, circle).
    with sessions() as session:
        pairs = set(
            session.execute(select(Suggestion.model_version_id, Tag.name).join(Tag, Tag.id == Suggestion.tag_id)).all()
        )
    assert pairs == {(ids[a], "night"), (ids[b], "circle")}
    with sessions() as session:
        refused = session.scalars(select(ModelVersion).where(ModelVersion.id == ids[c])).one()
        assert refused.status == "refused" and "checksum" in (refused.error or "")
        assert registry.active(session).version == a  # the refusing worker re-activated what it serves
    # Every suggestion row names the version that tagged its image, and one image has one version.
    assert all(first_only[image_id] == version for image_id, version in tagged)
    assert len({image_id for image_id, _ in tagged}) == len(tagged)
    assert (after.state.value, after.done, after.failed) == ("done", 30, 0)
    assert Counter(v for _, _, v, _ in _items(sessions, second.job_id)) == Counter({ids[a]: 30})
    # Two pool processes started once each, none was replaced, each with the torch threads it was given.
    assert log.read_text().count("ready (torch threads") == 2
    assert log.read_text().count("ready (torch threads 1)") == 2
    engine.dispose()
