"""Log lines as text or as JSON (TAGGER_LOG_FORMAT), each carrying the job, task and model version it is about.

The worker names the job and the version a batch is served by (`log_context`); the Celery task id is
read from Celery itself. Context variables are per thread, so task threads never mix their batches.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

job_id: ContextVar[str | None] = ContextVar("job_id", default=None)
model_version: ContextVar[str | None] = ContextVar("model_version", default=None)


@contextmanager
def log_context(*, job: str | None = None) -> Iterator[None]:
    """Within the block, log lines name `job` (and the model version set with `model_version.set`)."""
    job_token = job_id.set(job)
    version_token = model_version.set(None)
    try:
        yield
    finally:
        model_version.reset(version_token)
        job_id.reset(job_token)


class ContextFilter(logging.Filter):
    """Adds job_id, task_id and model_version to every record (None where there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = job_id.get()
        record.model_version = model_version.get()
        record.task_id = _task_id()
        return True


def _task_id() -> str | None:
    if "celery" not in sys.modules:  # a producer or a read command: no task, and no import for it
        return None
    from celery import current_task

    request = getattr(current_task, "request", None) if current_task else None
    return getattr(request, "id", None)


def configure(level: str, fmt: str) -> None:
    """The root handler: text lines, or one JSON object per line with the context fields."""
    handler = logging.StreamHandler()
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(job_id)s %(task_id)s %(model_version)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
