"""The jobs a worker process knows to be over for good, so that their queued batches cost it nothing.

A cancelled job, or one past its time limit, never tags an image again: `cancel` and the expiry skip every
pending image, a producer still listing it stops and skips what it added (tagger.jobs.producer), and
neither `resume` nor `retry` brings it back. Once such a job's listing is complete and no image of it is
pending, each of its batches still in the broker (or redelivered, or held back with a countdown) has
nothing to read and nothing to write: the worker answers it from this set, without the database.

One set per process, filled by the delivery that reads such a job from the database; bounded in size and
age like Celery's own set of revoked task ids (the same structure), and shared by a threads pool's tasks.
"""

from __future__ import annotations

import threading

MAX_JOBS = 10_000  # job ids are 32 characters: well under a megabyte
KEEP_SECONDS = 24 * 3600.0  # a day: longer than any job's batches stay queued behind others


class EndedJobs:
    """Job ids whose batches have nothing left to do; thread-safe."""

    def __init__(self, *, max_jobs: int = MAX_JOBS, keep_seconds: float = KEEP_SECONDS) -> None:
        from celery.utils.collections import LimitedSet

        self._ids = LimitedSet(maxlen=max_jobs, expires=keep_seconds)
        self._lock = threading.Lock()

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return job_id in self._ids

    def add(self, job_id: str) -> None:
        with self._lock:
            self._ids.add(job_id)
