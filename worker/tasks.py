"""The batch task: a job ID and a list of keys in, suggestions and outcomes in the database out."""

from __future__ import annotations

import logging
import random

from celery import Task
from celery.exceptions import Retry

from api_client.contract import (
    QUEUE_INTERACTIVE,
    TASK_NOTIFY_JOB,
    TASK_TAG_BATCH,
    JobState,
    MessageError,
    validate_tag_batch_args,
)
from tagger.db.schema import Job
from worker.app import app
from worker.context import get_context

log = logging.getLogger(__name__)

MAX_STORAGE_RETRIES = 5
MAX_BATCH_RETRIES = 3
PAUSE_RECHECK_SECONDS = 2.0


@app.task(name=TASK_TAG_BATCH, bind=True, acks_late=True, max_retries=None)
def tag_batch(self: Task, job_id: str, keys: list[str]) -> dict[str, int]:
    try:
        job_id, keys = validate_tag_batch_args([job_id, keys])
    except MessageError as exc:
        log.error("refused message %s: %s", self.request.id, exc)
        return {"refused": 1}
    try:
        return run_batch(job_id, keys, task=self)
    except Retry:
        raise
    except Exception as exc:
        # Nothing is lost: retry the whole batch with backoff (writes are idempotent), and after
        # the last attempt record every key as failed with the reason, so the job still ends.
        if self.request.retries < MAX_BATCH_RETRIES:
            log.exception("job %s: batch of %d failed; retrying", job_id, len(keys))
            raise self.retry(countdown=min(60, 2**self.request.retries) + random.random()) from exc
        log.exception("job %s: batch of %d failed for the last time", job_id, len(keys))
        reason = f"worker error after {MAX_BATCH_RETRIES + 1} attempts: {type(exc).__name__}: {exc}"
        return fail_items(get_context().sessions, job_id, keys, reason)


def run_batch(job_id: str, keys: list[str], *, task: Task | None = None) -> dict[str, int]:
    """storage -> loader -> inference -> sink for one batch; callable without Celery in tests."""
    from worker.inference import above_threshold, predict
    from worker.loader import load_batch
    from worker.sink import Refused, Tagged, record_batch

    ctx = get_context()
    with ctx.sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            log.error("job %s does not exist; dropping a batch of %d keys", job_id, len(keys))
            return {"dropped": len(keys)}
        state, storage_url, queue, has_deadline = JobState(job.state), job.storage_url, job.queue, job.deadline_at
    if has_deadline is not None:
        from jobs.control import expire_if_overdue

        with ctx.sessions() as session, session.begin():
            expired = expire_if_overdue(session, job_id)
        if expired:
            log.warning("job %s passed its time limit; its remaining batches are skipped", job_id)
            state = JobState.FAILED
            notify(job_id)
    if state in (JobState.CANCELLED, JobState.FAILED):  # remaining batches are skipped without any I/O
        counts = record_batch(ctx.sessions, job_id=job_id, model_version_id=None, skipped=keys)
        return {"skipped": counts.skipped}
    if state == JobState.PAUSED:
        # Back to the broker with a delay; this delivery is acknowledged, so no worker holds it meanwhile.
        tag_batch.apply_async(args=[job_id, keys], queue=queue, countdown=PAUSE_RECHECK_SECONDS)
        return {"deferred": len(keys)}

    serving = ctx.runtime.current()
    loaded, failed = load_batch(
        ctx.storage(storage_url),
        keys,
        preprocess=serving.preprocess,
        pool=ctx.pool,
        max_bytes=ctx.settings.max_image_bytes,
    )
    retry_keys = [f.key for f in failed if f.retryable]
    if retry_keys and task is not None and task.request.retries < MAX_STORAGE_RETRIES:
        failed = [f for f in failed if not f.retryable]
    else:
        retry_keys = []

    tagged: list[Tagged] = []
    if loaded:
        import torch

        batch = torch.stack([item.pixels for item in loaded])
        probs = predict(serving.model, batch, normalise=serving.normalise, device=serving.device, dtype=serving.dtype)
        for item, hits in zip(loaded, above_threshold(probs, serving.thresholds), strict=True):
            tagged.append(Tagged(item.key, [(serving.tag_ids[i], p) for i, p in hits]))
    for f in failed:
        log.info("job %s: %s failed: %s", job_id, f.key, f.reason)
    counts = record_batch(
        ctx.sessions,
        job_id=job_id,
        model_version_id=serving.version_id,
        tagged=tagged,
        refused=[Refused(f.key, f.reason) for f in failed],
    )
    if counts.closed:
        notify(job_id)
    if retry_keys and task is not None:
        countdown = min(60, 2**task.request.retries) + random.random()
        raise task.retry(args=[job_id, retry_keys], countdown=countdown)
    return {"done": counts.done, "failed": counts.failed, "model_version": serving.version_id}


def fail_items(sessions, job_id: str, keys: list[str], reason: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    from worker.sink import Refused, record_batch

    with sessions() as session:
        if session.get(Job, job_id) is None:
            return {"dropped": len(keys)}
    counts = record_batch(sessions, job_id=job_id, model_version_id=None, refused=[Refused(k, reason) for k in keys])
    if counts.closed:
        notify(job_id)
    return {"done": 0, "failed": counts.failed}


def notify(job_id: str) -> None:
    """The job just ended: deliver its notifications from a task of their own (retried apart from this batch)."""
    app.send_task(TASK_NOTIFY_JOB, args=[job_id], queue=QUEUE_INTERACTIVE)
