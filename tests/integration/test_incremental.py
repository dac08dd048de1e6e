"""Re-runs tag only what is new or changed: the real producer, the worker's own batch pipeline run in this
process (storage fetch -> decode -> model -> sink) and the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from tagger.db.schema import Image, JobItem
from tagger.jobs.producer import submit
from tagger.jobs.progress import JobSummary, summary
from tagger.settings import Settings
from tagger_client.contract import TASK_TAG_BATCH, JobSpec
from tests.conftest import make_model, write_stills


@dataclass
class Rig:
    """Submits jobs and runs their batches through `tagger.worker.tasks.run_batch` with a worker context of
    its own: the model, the storage reads and the sink are the worker's, without a worker process."""

    settings: Settings
    sessions: Any
    ctx: Any
    batches: int = 0  # the batch messages the last job sent

    def tag(self, storage_url: str, **spec: Any) -> JobSummary:
        from tagger.worker.tasks import run_batch

        sent: list[tuple[str, list[Any], str]] = []
        spec.setdefault("prefix", "")
        job = JobSpec.new(storage_url=storage_url, batch_size=4, **spec)
        submitted = submit(self.sessions, lambda *message: sent.append(message), job, self.settings)
        batches = [args for task, args, _ in sent if task == TASK_TAG_BATCH]
        for job_id, image_ids in batches:
            run_batch(job_id, image_ids, self.ctx)
        self.batches = len(batches)
        return summary(self.sessions, submitted.job_id)

    def items(self, job_id: str) -> dict[str, str]:
        """key -> the image's outcome in the job."""
        with self.sessions() as session:
            found = select(Image.key, JobItem.state).join(Image, Image.id == JobItem.image_id)
            rows = session.execute(found.where(JobItem.job_id == job_id)).all()
        return {key: state for key, state in rows}

    def recorded(self, key: str) -> tuple[int | None, int | None, str | None, str | None]:
        """What the database holds of the image's bytes when it was last tagged: size, mtime, ETag, SHA-256."""
        with self.sessions() as session:
            return session.execute(
                select(Image.size_bytes, Image.mtime_ns, Image.etag, Image.sha256).where(Image.key == key)
            ).one()


@pytest.fixture
def rig(settings: Settings, sessions, redis_url: str) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    from tagger.worker import app
    from tagger.worker.context import build_context

    make_model(settings, sessions)
    app.configure(settings, redis_url)  # a job that ends in a batch is announced through the worker's sender
    ctx = build_context(settings)
    yield Rig(settings, sessions, ctx)
    ctx.pool.shutdown()
    ctx.engine.dispose()
    ctx.sessions.kw["bind"].dispose()


def test_a_rerun_tags_what_is_new_changed_or_failed_and_all_on_request(rig: Rig, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    keys = write_stills(archive, 10, seed=2)
    url = archive.as_uri()
    first = rig.tag(url)
    assert (first.state.value, first.total, first.done, first.unchanged) == ("done", 10, 10, 0)
    status = os.stat(archive / keys[0])
    assert rig.recorded(keys[0]) == (status.st_size, status.st_mtime_ns, None, None)  # the bytes read, by fstat

    unchanged = rig.tag(url)  # nothing to do: no batch, and the job ends as it is submitted
    assert rig.batches == 0 and rig.items(unchanged.id) == {}
    assert (unchanged.state.value, unchanged.total, unchanged.unchanged) == ("done", 0, 10)
    assert unchanged.finished_at is not None

    added = [f"stills/new_{i}.jpg" for i in range(3)]
    for i, key in enumerate(added):
        (archive / key).write_bytes((archive / keys[i]).read_bytes())
    other = next(k for k in keys[3:] if os.stat(archive / k).st_size != os.stat(archive / keys[1]).st_size)
    (archive / keys[1]).write_bytes((archive / other).read_bytes())  # new bytes, another size, under the same key
    touched = archive / keys[2]  # the same size, another modification time: re-tagged (the listing cannot tell)
    before = os.stat(touched)
    touched.write_bytes(touched.read_bytes())
    os.utime(touched, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    changed = rig.tag(url)
    assert rig.items(changed.id) == dict.fromkeys([*added, keys[1], keys[2]], "done")
    assert (changed.total, changed.done, changed.unchanged) == (5, 5, 8)

    (archive / keys[3]).write_bytes(b"no longer a picture")  # tagged before, now fails: and is tried by each re-run
    failing = rig.tag(url)
    assert rig.items(failing.id) == {keys[3]: "failed"} and failing.unchanged == 12
    assert rig.recorded(keys[3]) == (None, None, None, None)
    retried = rig.tag(url)
    assert rig.items(retried.id) == {keys[3]: "failed"} and retried.state.value == "done_with_failures"

    everything = rig.tag(url, incremental=False)  # --all
    assert (everything.total, everything.done, everything.failed, everything.unchanged) == (13, 12, 1, 0)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_s3_prefix_is_compared_by_etag_and_a_new_version_retags_everything(rig: Rig, s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, bucket = s3.client(), f"incremental-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    local = tmp_path / "upload"
    keys = write_stills(local, 6, seed=4)
    for key in keys:
        client.put_object(Bucket=bucket, Key=f"archive/{key}", Body=(local / key).read_bytes())
    url = f"s3://{bucket}/archive"
    first = rig.tag(url)
    assert (first.state.value, first.done) == ("done", 6)
    head = client.head_object(Bucket=bucket, Key=f"archive/{keys[0]}")
    assert rig.recorded(keys[0]) == (head["ContentLength"], None, head["ETag"].strip('"'), None)

    assert (rig.tag(url).total, rig.batches) == (0, 0)
    client.put_object(Bucket=bucket, Key=f"archive/{keys[0]}", Body=(local / keys[1]).read_bytes())  # a new ETag
    replaced = rig.tag(url)
    assert rig.items(replaced.id) == {keys[0]: "done"} and replaced.unchanged == 5

    make_model(rig.settings, rig.sessions, seed=1)  # a new active version: every image is stale
    stale = rig.tag(url)
    assert (stale.total, stale.done, stale.unchanged) == (6, 6, 0)
    assert rig.tag(url).unchanged == 6  # and once the new version has tagged them, they are up to date again


def test_with_content_hash_a_replacement_that_kept_its_size_and_time_is_tagged(rig: Rig, tmp_path: Path) -> None:
    """A storage whose listing cannot be trusted: bytes replaced, size and modification time kept (a copy that
    preserves times). Only hashing finds it; the hash is what the worker read, recorded as it tagged."""
    archive = tmp_path / "archive"
    keys = write_stills(archive, 4, seed=6)
    url = archive.as_uri()
    first = rig.tag(url, content_hash=True)
    assert first.done == 4
    target = archive / keys[1]
    assert rig.recorded(keys[1])[3] == hashlib.sha256(target.read_bytes()).hexdigest()
    before = os.stat(target)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (os.stat(target).st_size, os.stat(target).st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    trusting = rig.tag(url)  # TAGGER_CONTENT_HASH=0: the listing's size and time decide, and they did not move
    assert (trusting.total, trusting.unchanged) == (0, 4)
    hashing = rig.tag(url, content_hash=True)
    assert set(rig.items(hashing.id)) == {keys[1]} and hashing.unchanged == 3


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_text_arrays_reach_postgresql_element_for_element(sessions) -> None:  # type: ignore[no-untyped-def]
    """The sink hands ETags and hashes to PostgreSQL as one array literal: quotes, backslashes, commas, braces
    and the word NULL stay text, and None is NULL."""
    from tagger.db.arrays import text_array_literal

    values = ['"abc-2"', "back\\slash", "a,b", "{x}", "NULL", "", None, "ünï"]
    with sessions() as session:
        got = session.execute(text("SELECT CAST(:a AS text[])"), {"a": text_array_literal(values)}).scalar_one()
    assert got == values
