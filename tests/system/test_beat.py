"""Scheduled retraining: the schedule from settings, and a real `tagger beat` queuing a JSON message."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import redis

from tagger.settings import Settings
from tagger_client.contract import QUEUE_TRAINING, TASK_RETRAIN


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
