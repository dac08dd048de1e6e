"""The worker's Celery app. Task code is imported here; producers use tagger.broker.config instead."""

from __future__ import annotations

from celery import Celery

from tagger.broker.config import celery_config
from tagger.settings import Settings

app = Celery("tagger", include=["tagger.worker.tasks", "tagger.worker.job_tasks", "tagger.worker.retrain"])


def configure(settings: Settings, broker_url: str) -> Celery:
    app.conf.update(celery_config(settings, broker_url))
    return app
