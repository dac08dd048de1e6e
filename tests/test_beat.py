"""Scheduled retraining: the schedule from settings, and a real `tagger beat` queuing a JSON message."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tagger.errors import ConfigError
from tagger.settings import Settings
from tagger.worker.retrain import beat_schedule, retrain_args
from tagger_client.contract import QUEUE_TRAINING, TASK_RETRAIN


def test_default_schedule_is_monthly_and_runs_the_gate_and_stale_retag() -> None:
    settings = Settings(var_dir=Path("var"))
    entry = beat_schedule(settings)["retrain"]
    when = entry["schedule"]
    assert (entry["task"], entry["options"]["queue"]) == (TASK_RETRAIN, QUEUE_TRAINING)
    assert when.minute == {0} and when.hour == {3} and when.day_of_month == {1} and len(when.month_of_year) == 12
    assert retrain_args(settings.replace(retrain_args="--epochs 8")) == [
        "--labels",
        "db",
        "--epochs",
        "8",
        "--retag-stale",
    ]
    with pytest.raises(ConfigError, match="cron"):
        Settings(retrain_schedule="monthly")


def test_beat_queues_a_json_retrain_message(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    client.delete(QUEUE_TRAINING)
    env = Settings(var_dir=tmp_path, broker_url=redis_url, retrain_schedule="1").as_env()
    beat = subprocess.Popen(  # in tmp_path, where celery's default scheduler would write its shelve
        [sys.executable, "-m", "tagger", "beat"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while client.llen(QUEUE_TRAINING) == 0 and time.monotonic() < deadline and beat.poll() is None:
            time.sleep(0.2)
        assert client.llen(QUEUE_TRAINING) > 0, beat.stderr.read().decode()[-2000:] if beat.poll() else "no message"
        message = json.loads(client.lindex(QUEUE_TRAINING, 0))
        assert message["headers"]["task"] == TASK_RETRAIN
        assert message["content-type"] == "application/json"
        assert not list(tmp_path.glob("celerybeat-schedule*"))  # no pickle-based shelve on disk, here or in var
        assert not list((tmp_path / "var").glob("**/celerybeat-schedule*"))
    finally:
        beat.terminate()
        beat.wait(30)
        beat.stderr.close()  # type: ignore[union-attr]
        client.delete(QUEUE_TRAINING)
        client.close()


@pytest.mark.e2e
def test_a_scheduled_retrain_runs_promotes_and_retags_stale_images_across_storages(  # type: ignore[no-untyped-def]
    postgres, redis_url: str, tmp_path: Path
) -> None:
    """The retrain message beat sends, run by a worker on tagger.training: `tagger train` (recipe, gate,
    --force here) then a stale re-tag job whose images live in two folders."""
    import uuid

    from sqlalchemy import select

    from tagger.celeryconfig import make_producer_app
    from tagger.cli.local_workers import LocalWorkers
    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.db.schema import Image, Job
    from tagger.jobs.producer import celery_sender
    from tagger.jobs.progress import wait
    from tests.conftest import make_model, make_settings, submit_keys, write_stills

    archive, other = tmp_path / "archive", tmp_path / "other"
    keys = write_stills(archive, 60, seed=14)
    other_keys = write_stills(other, 8, seed=15)
    settings = make_settings(
        tmp_path,
        postgres.create_database(f"rt_{uuid.uuid4().hex[:10]}"),
        broker_url=redis_url,
        retrain_labels=str(archive / "labels.csv"),
        retrain_args=f"--images {archive} --random-init --size 32 --batch-size 16 --epochs 1 --force",
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    first = make_model(settings, sessions)
    app = make_producer_app(settings, redis_url)
    send = celery_sender(app)
    log = tmp_path / "workers.log"
    with LocalWorkers(settings, count=1, log_file=log) as taggers:
        for folder, names in ((archive, keys[:10]), (other, other_keys)):
            job = submit_keys(sessions, send, names, storage_url=folder.as_uri()).job_id
            wait(sessions, job, timeout=120, show_progress=False, alive=taggers.alive)
        trainer = LocalWorkers(settings, count=1, log_file=log, queues=QUEUE_TRAINING).start()
        try:
            app.send_task(TASK_RETRAIN, queue=QUEUE_TRAINING)  # what beat sends on schedule
            deadline = time.monotonic() + 240
            while True:
                with sessions() as session:
                    stale = session.scalars(select(Job.id).where(Job.source == "query:stale")).first()
                if stale:
                    break
                assert time.monotonic() < deadline and trainer.alive(), log.read_text()[-4000:]
                time.sleep(0.5)
            retagged = wait(sessions, stale, timeout=120, show_progress=False, alive=taggers.alive)
        finally:
            trainer.stop()
    with sessions() as session:
        from tagger import registry

        active = registry.active(session)
        versions = set(session.scalars(select(Image.model_version_id).where(Image.model_version_id.is_not(None))))
    assert active.version != first and active.meta["training"]["labels"] == str(archive / "labels.csv")
    assert (retagged.state.value, retagged.total, retagged.done) == ("done", 18, 18)  # both folders
    assert versions == {active.id}
    engine.dispose()
