"""Producers: a prefix with more keys than one listing page is enqueued while the listing continues."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jobs.producer import submit
from jobs.sources import keys_from_storage
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.schema import Job
from tagger.storage import open_storage


def test_streaming_listing_enqueues_batches_before_the_listing_ends(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s3.client().create_bucket(Bucket="streaming")
    storage = open_storage("s3://streaming/archive")
    keys = [f"k/{i:05d}.jpg" for i in range(1100)]  # ListObjectsV2 returns 1,000 per page
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: storage.write(k, b"x"), keys))

    listed = 0

    def counted() -> Iterator[str]:
        nonlocal listed
        for key in keys_from_storage(storage):
            listed += 1
            yield key

    sent: list[tuple[int, int]] = []  # (keys listed so far, keys in this message)

    def send(task: str, args: list[Any], queue: str) -> None:
        if task == "tagger.tag_batch":
            sent.append((listed, len(args[1])))

    engine = make_engine(f"sqlite:///{tmp_path / 'tagger.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    job = submit(sessions, send, source="s3", storage_url=storage.url, keys=counted(), batch_size=100)

    assert sum(n for _, n in sent) == 1100 and len(sent) == 11
    assert sent[0][0] == 100  # the first batch left when 100 keys had been listed, not 1,100
    assert all(seen <= 100 * (i + 1) for i, (seen, _) in enumerate(sent))  # never more than one batch ahead
    with sessions() as session:
        row = session.get(Job, job.job_id)
        assert row is not None and (row.total, row.batches, row.listing_complete) == (1100, 11, True)
    engine.dispose()
