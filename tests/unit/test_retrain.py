"""Scheduled retraining: the schedule from settings (a real `tagger beat`: tests/system/test_beat.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_a_zone_that_is_not_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="TAGGER_RETRAIN_TIMEZONE='JST' is not a time zone"):
        Settings(retrain_timezone="JST")
