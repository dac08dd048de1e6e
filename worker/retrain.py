"""Scheduled retraining: `tagger beat` queues `tagger.retrain`; a worker on the training queue runs it.

One run = `tagger train` on the configured labels, the promotion gate, and (on promotion) a
low-priority job re-tagging stale images. Acknowledged on receipt, not late: a training run
is longer than any visibility timeout, and a lost run simply waits for the next schedule.
"""

from __future__ import annotations

import json
import logging
import shlex
from typing import Any

from celery.schedules import crontab, schedule

from tagger.processes import run_tagger
from tagger.settings import Settings
from tagger.worker.app import app
from tagger.worker.context import get_context
from tagger_client.contract import QUEUE_TRAINING, TASK_RETRAIN

log = logging.getLogger(__name__)


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The beat schedule from TAGGER_RETRAIN_SCHEDULE: five cron fields (read in TAGGER_RETRAIN_TIMEZONE, the
    app's `timezone`), or a number of seconds."""
    parts = settings.retrain_schedule.split()
    if len(parts) == 1:
        when: Any = schedule(float(parts[0]))
    else:
        minute, hour, day_of_month, month_of_year, day_of_week = parts
        when = crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            app=app,
        )
    return {"retrain": {"task": TASK_RETRAIN, "schedule": when, "options": {"queue": QUEUE_TRAINING}}}


def retrain_args(settings: Settings) -> list[str]:
    return ["--labels", settings.retrain_labels, *shlex.split(settings.retrain_args), "--retag-stale"]


@app.task(name=TASK_RETRAIN, acks_late=False, ignore_result=True)
def retrain() -> dict[str, Any]:
    """Run `tagger train` in a child process: training's memory (and GPU) is returned when it ends, and
    the command that people run by hand is the one that runs on schedule."""
    settings = get_context().settings
    argv = ["train", *retrain_args(settings), "--json"]
    log.info("scheduled retraining: %s", shlex.join(argv))
    done = run_tagger(settings, *argv)
    if done.returncode != 0:
        log.error("scheduled retraining failed (exit %d): %s", done.returncode, done.stderr[-4000:])
        return {"exit_code": done.returncode}
    report = json.loads(done.stdout)
    log.info("scheduled retraining: %s, gate: %s", report["version"], (report.get("gate") or {}).get("reason"))
    return {"version": report["version"], "activated": report["activated"], "stale_job": report["stale_job"]}
