"""The worker's Celery app, and the one sender its tasks send through.

Task code is imported here; producers use tagger.broker.config instead."""

from __future__ import annotations

from celery import Celery

from tagger.broker.config import celery_config
from tagger.broker.send import celery_sender
from tagger.settings import Settings

app = Celery("tagger", include=["tagger.worker.tasks", "tagger.worker.job_tasks", "tagger.worker.retrain"])
send = celery_sender(app)  # built once per process: every task of this worker sends through it


def configure(settings: Settings, broker_url: str) -> Celery:
    app.conf.update(celery_config(settings, broker_url))
    return app
