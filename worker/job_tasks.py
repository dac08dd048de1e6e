"""Job-level tasks: submit a job from one message, control a job, and notify when it ends.

These are the tasks a web backend in any language sends (see docs/integrate.md, "Queue jobs from
your web backend"); they do no image work themselves and run on the interactive queue.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import update

from tagger.jobs.lifecycle import announce_end
from tagger.worker.app import app, send
from tagger.worker.context import get_context
from tagger_client.contract import (
    QUEUE_INTERACTIVE,
    QUEUE_NOTIFICATIONS,
    TASK_CONTROL_JOB,
    TASK_NOTIFY_JOB,
    TASK_SUBMIT_JOB,
    JobSpec,
    JobState,
    MessageError,
    is_job_id,
    validate_control_kwargs,
)

log = logging.getLogger(__name__)


@app.task(name=TASK_SUBMIT_JOB, acks_late=True)
def submit_job(**kwargs: Any) -> dict[str, Any]:
    """Create the job (idempotent on job_id) and enqueue its batches; a redelivery finishes the listing.

    A message the contract refuses, or a source that cannot be read, still leaves a trace the submitter
    can read: a `failed` job with the reason, whenever the message names a valid job id.
    """
    from tagger.errors import TaggerError
    from tagger.jobs.producer import submit

    try:
        spec = JobSpec.from_message(kwargs)
    except MessageError as exc:
        job_id = kwargs.get("job_id")
        if isinstance(job_id, str) and is_job_id(job_id):
            return _refuse(JobSpec.new(job_id=job_id, keys=[]), f"refused message: {exc}")
        log.error("refused a submit_job message without a usable job_id: %s", exc)
        return {"refused": str(exc)}
    ctx = get_context()
    try:
        job = submit(ctx.sessions, send, spec, ctx.settings)
    except TaggerError as exc:  # no storage, a missing folder or bucket: the reason goes on a failed job
        return _refuse(spec, str(exc))
    log.info("job %s: %s", job.job_id, "queued" if job.created else "already queued")
    return {"job_id": job.job_id, "created": job.created}


def _refuse(spec: JobSpec, reason: str) -> dict[str, Any]:
    """Record the refusal on a failed job row, so the submitter can read why (and its webhook hears)."""
    from tagger.jobs.lifecycle import fail
    from tagger.jobs.producer import create_job

    ctx = get_context()
    create_job(ctx.sessions, spec, source="refused", storage_url=spec.storage_url or "", batch_size=1)
    with ctx.sessions() as session, session.begin():
        fail(session, spec.job_id, reason)
    log.error("job %s refused: %s", spec.job_id, reason)
    announce_end(send, spec.job_id)
    return {"job_id": spec.job_id, "refused": reason}


@app.task(name=TASK_CONTROL_JOB, acks_late=True)
def control_job(**kwargs: Any) -> dict[str, Any]:
    from tagger.jobs import control

    try:
        job_id, action = validate_control_kwargs(kwargs)
    except MessageError as exc:
        log.error("refused a control_job message: %s", exc)
        return {"refused": str(exc)}
    sessions = get_context().sessions
    if action == "retry":
        return {"job_id": job_id, "retried": control.retry_failed(sessions, send, job_id)}
    state = getattr(control, action)(sessions, job_id, send=send)
    return {"job_id": job_id, "state": state}


@app.task(name=TASK_NOTIFY_JOB, acks_late=True)
def notify_job(job_id: str, attempt: int = 1) -> dict[str, Any]:
    """Send the named task's message (once) and hand the webhook POST to this process's delivery thread.

    Returns at once: a receiver that never answers holds up a delivery thread, never a batch.
    """
    from tagger.db.schema import Job, utcnow
    from tagger.jobs.notify import payload

    ctx = get_context()
    with ctx.sessions() as session:
        job = session.get(Job, job_id)
        if job is None or job.notified_at is not None or not JobState(job.state).finished:
            return {"skipped": job_id}
        notify = dict((job.options or {}).get("notify") or {})
    if not notify:
        return {"nothing_to_notify": job_id}
    if notify.get("notify_task") and attempt == 1:
        app.send_task(notify["notify_task"], kwargs={"job": payload(ctx.sessions, job_id)}, queue=QUEUE_NOTIFICATIONS)
    if not notify.get("webhook"):
        with ctx.sessions() as session, session.begin():
            session.execute(update(Job).where(Job.id == job_id).values(notified_at=utcnow()))
        return {"notified": job_id}
    _deliveries().submit(_deliver, job_id, notify["webhook"], attempt)
    return {"delivering": job_id, "attempt": attempt}


def _deliver(job_id: str, url: str, attempt: int) -> None:
    """One webhook attempt, off the task pool; its outcome is recorded, and a failure schedules the next."""
    from tagger.jobs.notify import MAX_ATTEMPTS, DeliveryError, payload, post_webhook, record_attempt, retry_delay

    ctx = get_context()
    try:
        post_webhook(
            url,
            payload(ctx.sessions, job_id),
            secret=ctx.settings.webhook_secret,
            attempt=attempt,
            timeout=ctx.settings.webhook_timeout,
        )
        error = None
    except DeliveryError as exc:
        error = str(exc)
    except Exception as exc:  # the database or the payload: recorded, retried like a refused delivery
        log.exception("job %s: webhook attempt %d failed", job_id, attempt)
        error = f"{type(exc).__name__}: {exc}"
    try:
        record_attempt(ctx.sessions, job_id, attempt=attempt, error=error)
    except Exception:  # the next attempt (or `tagger jobs reconcile`) records it
        log.warning("job %s: could not record webhook attempt %d", job_id, attempt, exc_info=True)
    if error is None:
        return
    if attempt >= MAX_ATTEMPTS:
        log.error("job %s: giving up on the webhook after %d attempts: %s", job_id, attempt, error)
        return
    log.warning("job %s: webhook attempt %d: %s; retrying in %.0fs", job_id, attempt, error, retry_delay(attempt))
    app.send_task(
        TASK_NOTIFY_JOB,
        args=[job_id],
        kwargs={"attempt": attempt + 1},
        countdown=retry_delay(attempt),
        queue=QUEUE_INTERACTIVE,
    )


_pool: ThreadPoolExecutor | None = None


def _deliveries() -> ThreadPoolExecutor:
    """This process's webhook threads (made after fork, in the process that uses them)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(4, thread_name_prefix="webhook")
    return _pool
