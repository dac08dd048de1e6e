"""Lost messages heal without a person: a job whose queued batches the broker lost (here a Redis emptied, as a
restart without persistence or an eviction leaves it) is queued again by the workers' healer and ends."""

from __future__ import annotations

from pathlib import Path

import redis

from tagger.broker.embedded import EmbeddedRedis
from tagger.broker.send import broker_sender
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.jobs.progress import summary
from tagger.worker.local import LocalWorkers
from tests.conftest import make_model, make_settings, submit_keys, write_stills
from tests.support.waiting import until


def test_a_job_whose_messages_were_lost_is_queued_again_and_ends(tmp_path: Path) -> None:
    with EmbeddedRedis() as broker:
        settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'tagger.db'}", broker_url=broker.url, heal_seconds=2)
        engine = make_engine(settings.database_url)
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        make_model(settings, sessions)
        keys = write_stills(tmp_path / "archive", 12, seed=3)
        send = broker_sender(settings)
        job = submit_keys(sessions, send, keys, storage_url=(tmp_path / "archive").as_uri(), batch_size=4).job_id
        with redis.Redis.from_url(broker.url) as client:
            assert client.dbsize() > 0
            client.flushall()  # every queued batch gone, and the queues' bindings with them
        assert summary(sessions, job).state.value == "queued"
        log = tmp_path / "workers.log"
        with LocalWorkers(settings, count=1, log_file=log):
            until(lambda: summary(sessions, job).state.value == "done", 120, log)
        assert summary(sessions, job).done == 12
        assert "the broker held none of its messages; 12 pending image(s) queued again" in log.read_text()
        engine.dispose()
