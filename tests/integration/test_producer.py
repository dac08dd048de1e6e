"""Producers: a prefix of several listing pages is enqueued while the listing continues."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.schema import Job
from tagger.jobs import sources
from tagger.jobs.producer import submit
from tagger.settings import Settings
from tagger.storage import open_storage
from tagger_client.contract import JobSpec


def test_streaming_listing_enqueues_batches_before_the_listing_ends(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    s3.client().create_bucket(Bucket="streaming")
    storage = open_storage("s3://streaming/archive")
    keys = [f"k/{i:05d}.jpg" for i in range(3100)]  # ListObjectsV2 returns 1,000 per page: four pages
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: storage.write(k, b"x"), keys))

    pages = 0  # ListObjectsV2 responses the S3 server has answered so far

    def count_page(**_: Any) -> None:
        nonlocal pages
        pages += 1

    storage.client.meta.events.register("after-call.s3.ListObjectsV2", count_page)  # type: ignore[attr-defined]
    monkeypatch.setattr(sources, "open_storage", lambda url: storage)
    sent: list[tuple[int, int]] = []  # (pages fetched so far, keys in this message)

    def send(task: str, args: list[Any], queue: str) -> None:
        if task == "tagger.tag_batch":
            sent.append((pages, len(args[1])))

    engine = make_engine(f"sqlite:///{tmp_path / 'tagger.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    spec = JobSpec.new(prefix="", storage_url=storage.url, batch_size=100)
    job = submit(sessions, send, spec, Settings(var_dir=tmp_path))

    assert sum(n for _, n in sent) == 3100 and len(sent) == 31 and pages == 4
    # The producer commits and sends 2,000 keys at a time (producer.PAGE): the first twenty batches left
    # when two of the four pages had been fetched, not after the whole listing.
    assert [p for p, _ in sent] == [2] * 20 + [4] * 11
    with sessions() as session:
        row = session.get(Job, job.job_id)
        assert row is not None and (row.total, row.batches, row.listing_complete) == (3100, 31, True)
    engine.dispose()
