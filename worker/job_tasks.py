"""Job-level tasks: submit a job from one message, control a job, and notify when it ends.

These are the tasks a web backend in any language sends (see README, "Queue jobs from your
web backend"); they do no image work themselves and run on the interactive queue.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from tagger.jobs.lifecycle import announce_end
from tagger.jobs.producer import celery_sender
from tagger.worker.app import app
from tagger.worker.context import get_context
from tagger_client.contract import (
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

MAX_NOTIFY_RETRIES = 8


_send = celery_sender(app)


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
        job = submit(ctx.sessions, _send, spec, ctx.settings)
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
    announce_end(_send, spec.job_id)
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
        return {"job_id": job_id, "retried": control.retry_failed(sessions, _send, job_id)}
    state = getattr(control, action)(sessions, job_id, send=_send)
    return {"job_id": job_id, "state": state}


@app.task(name=TASK_NOTIFY_JOB, bind=True, acks_late=True, max_retries=MAX_NOTIFY_RETRIES)
def notify_job(self: Task, job_id: str) -> dict[str, Any]:
    """POST the summary to the job's webhook (retried with backoff) and/or send it to the named task."""
    from sqlalchemy import update

    from tagger.db.schema import Job, utcnow
    from tagger.jobs.notify import DeliveryError, post_webhook
    from tagger.jobs.progress import failures, summary

    ctx = get_context()
    with ctx.sessions() as session:
        job = session.get(Job, job_id)
        if job is None or job.notified_at is not None or not JobState(job.state).finished:
            return {"skipped": job_id}
        notify = dict((job.options or {}).get("notify") or {})
    if not notify:
        return {"nothing_to_notify": job_id}
    payload = summary(ctx.sessions, job_id).as_dict() | {
        "failures": [{"key": k, "reason": r} for k, r in failures(ctx.sessions, job_id, limit=100)]
    }
    if notify.get("notify_task") and self.request.retries == 0:
        app.send_task(notify["notify_task"], kwargs={"job": payload}, queue=QUEUE_NOTIFICATIONS)
    if notify.get("webhook"):
        try:
            post_webhook(
                notify["webhook"], payload, secret=ctx.settings.webhook_secret, attempt=self.request.retries + 1
            )
        except DeliveryError as exc:
            if self.request.retries >= MAX_NOTIFY_RETRIES:
                log.error("job %s: giving up on the webhook after %d attempts: %s", job_id, MAX_NOTIFY_RETRIES + 1, exc)
                return {"undelivered": str(exc)}
            log.warning("job %s: %s; retrying", job_id, exc)
            raise self.retry(countdown=min(300, 2**self.request.retries)) from None
    with ctx.sessions() as session, session.begin():
        session.execute(update(Job).where(Job.id == job_id).values(notified_at=utcnow()))
    return {"notified": job_id}
