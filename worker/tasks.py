"""The batch task: a job ID and a list of keys in, suggestions and outcomes in the database out."""

from __future__ import annotations

import logging
import random
import time

from celery import Task
from celery.exceptions import Retry

from api_client.contract import TASK_TAG_BATCH, JobState, MessageError, validate_tag_batch_args
from tagger.db.schema import Job
from worker.app import app
from worker.context import get_context

log = logging.getLogger(__name__)

PAUSE_RECHECK_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRIES = 100  # ~50 minutes at the capped backoff: long enough to wait out a database or broker outage


@app.task(name=TASK_TAG_BATCH, bind=True, acks_late=True, max_retries=None)
def tag_batch(self: Task, job_id: str, keys: list[str]) -> dict[str, int]:
    try:
        job_id, keys = validate_tag_batch_args([job_id, keys])
    except MessageError as exc:
        log.error("refused message %s: %s", self.request.id, exc)
        return {"refused": 1}
    try:
        return run_batch(job_id, keys)
    except Retry:
        raise
    except Exception as exc:
        # Nothing is lost: the batch is retried with backoff (writes are idempotent). Each image's
        # attempts are counted in the database before its work starts, so an image that keeps
        # failing is given up with its reason by a later delivery; a database outage (nothing
        # counted) is simply waited out.
        countdown = min(MAX_BACKOFF_SECONDS, 2**self.request.retries) + random.random()
        if _is_infrastructure(exc):
            log.warning("job %s: batch of %d waits for the database/broker: %s", job_id, len(keys), exc)
        else:
            log.exception("job %s: batch of %d failed; retrying", job_id, len(keys))
            _note_error(job_id, keys, f"{type(exc).__name__}: {exc}")
        if self.request.retries >= MAX_RETRIES:
            log.error(
                "job %s: dropping a batch after %d retries; `tagger jobs reconcile` re-queues it",
                job_id,
                MAX_RETRIES,
            )
            return {"dropped": len(keys)}
        raise self.retry(countdown=countdown) from exc


def _is_infrastructure(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    return isinstance(exc, OperationalError | ConnectionError | TimeoutError) or (
        isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
    )


def _note_error(job_id: str, keys: list[str], error: str) -> None:
    from worker.sink import note_error

    try:
        note_error(get_context().sessions, job_id, keys, error)
    except Exception:  # best effort: the retry matters more than the note
        log.warning("could not record the error of job %s", job_id, exc_info=True)


def run_batch(job_id: str, keys: list[str]) -> dict[str, int]:
    """storage -> loader -> inference -> sink for one batch; callable without Celery in tests."""
    from worker.inference import above_threshold, device_lock, predict
    from worker.loader import load_batch
    from worker.sink import Refused, Tagged, count_attempt, pending_items, record_batch

    t_start = time.perf_counter()
    ctx = get_context()
    with ctx.sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            log.error("job %s does not exist; dropping a batch of %d keys", job_id, len(keys))
            return {"dropped": len(keys)}
        state, storage_url, queue, deadline = JobState(job.state), job.storage_url, job.queue, job.deadline_at
        max_attempts = job.max_attempts
    if deadline is not None:
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

    claim = pending_items(ctx.sessions, job_id, keys)
    if not claim.attempts:
        return {"already_done": len(keys)}  # a redelivery of a batch that was written
    given_up = [k for k, n in claim.attempts.items() if n >= max_attempts]
    todo = [k for k in keys if k in claim.attempts and claim.attempts[k] < max_attempts]
    if given_up:
        refused = [Refused(k, _gave_up(claim.attempts[k], claim.last_errors.get(k))) for k in given_up]
        counts = record_batch(ctx.sessions, job_id=job_id, model_version_id=None, refused=refused)
        if counts.closed:
            notify(job_id)
    if len(todo) > 1 and any(claim.attempts[k] > 0 for k in todo):
        # An earlier delivery of this batch never finished (a crash, a kill, a timeout): isolate each
        # image in a message of its own, so one poison image cannot take the others down with it.
        for key in todo:
            tag_batch.apply_async(args=[job_id, [key]], queue=queue)
        return {"split": len(todo)}
    if not todo:
        return {"failed": len(given_up)}
    count_attempt(ctx.sessions, job_id, todo)
    t_claimed = time.perf_counter()

    serving = ctx.runtime.current()
    loaded, failed = load_batch(
        ctx.storage(storage_url),
        todo,
        preprocess=serving.preprocess,
        pool=ctx.pool,
        max_bytes=ctx.settings.max_image_bytes,
        on_device=serving.on_device,
    )
    t_loaded = time.perf_counter()
    # A storage hiccup is retried while the image has attempts left; then it fails with the error.
    retry_keys = [f.key for f in failed if f.retryable and claim.attempts[f.key] + 1 < max_attempts]
    failed = [f for f in failed if f.key not in retry_keys]

    tagged: list[Tagged] = []
    if loaded:
        import torch

        batch = torch.stack([item.pixels for item in loaded])
        with device_lock:
            probs = predict(
                serving.model,
                batch,
                normalise=serving.normalise,
                device=serving.device,
                dtype=serving.dtype,
                pad_to=serving.fixed_batch,
            )
        for item, hits in zip(loaded, above_threshold(probs, serving.thresholds), strict=True):
            tagged.append(Tagged(item.key, [(serving.tag_ids[i], p) for i, p in hits]))
    for f in failed:
        log.info("job %s: %s failed: %s", job_id, f.key, f.reason)
    t_inferred = time.perf_counter()
    counts = record_batch(
        ctx.sessions,
        job_id=job_id,
        model_version_id=serving.version_id,
        tagged=tagged,
        refused=[Refused(f.key, f.reason) for f in failed],
    )
    log.info(
        "job %s: batch of %d in %.2fs: claim %.2fs, fetch+decode %.2fs, inference %.2fs, write %.2fs",
        job_id,
        len(todo),
        time.perf_counter() - t_start,
        t_claimed - t_start,
        t_loaded - t_claimed,
        t_inferred - t_loaded,
        time.perf_counter() - t_inferred,
    )
    if counts.closed:
        notify(job_id)
    if retry_keys:
        countdown = min(MAX_BACKOFF_SECONDS, 2 ** claim.attempts[retry_keys[0]]) + random.random()
        tag_batch.apply_async(args=[job_id, retry_keys], queue=queue, countdown=countdown)
    return {"done": counts.done, "failed": counts.failed, "model_version": serving.version_id}


def _gave_up(attempts: int, last_error: str | None) -> str:
    cause = last_error or "the worker processing it died, was killed or timed out each time"
    return f"gave up after {attempts} attempts: {cause}"


def notify(job_id: str) -> None:
    from jobs.lifecycle import announce_end
    from jobs.producer import celery_sender

    announce_end(celery_sender(app), job_id)
