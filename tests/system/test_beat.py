"""Scheduled retraining: the schedule from settings, and a real `tagger beat` queuing a JSON message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tagger.settings import Settings
from tagger_client.contract import QUEUE_TRAINING, TASK_RETRAIN

NEXT_RUN = """
from datetime import UTC, datetime
from tagger.settings import Settings
from tagger.worker.app import configure
from tagger.worker.retrain import beat_schedule
settings = Settings.from_env().replace(retrain_schedule="0 3 * * *")  # the zone: from the environment
configure(settings, "redis://127.0.0.1:1/0")  # configuration only: nothing connects
when = beat_schedule(settings)["retrain"]["schedule"]
start = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # winter: New York is UTC-5, Tokyo UTC+9
when.nowfun = lambda: start
print((start + when.remaining_estimate(start)).astimezone(UTC).isoformat())
"""


@pytest.mark.parametrize(
    ("zone", "next_run"),
    [(None, "2026-01-16T03:00:00+00:00"), ("Asia/Tokyo", "2026-01-15T18:00:00+00:00"),
     ("America/New_York", "2026-01-16T08:00:00+00:00")],
)  # fmt: skip
def test_the_schedule_is_read_in_its_configured_zone_not_the_host_s(zone: str | None, next_run: str) -> None:
    """`0 3 * * *` is 03:00 in TAGGER_RETRAIN_TIMEZONE (UTC when unset) whatever the host's TZ says. In a
    process of its own, as `tagger beat` runs: Celery reads an app's zone once."""
    env = {"TZ": "Pacific/Auckland", "PATH": os.environ["PATH"]} | ({"TAGGER_RETRAIN_TIMEZONE": zone} if zone else {})
    done = subprocess.run([sys.executable, "-c", NEXT_RUN], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == next_run


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
