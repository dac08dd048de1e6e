"""Job-level tasks: submit a job from one message, control a job, and notify when it ends.

These are the tasks a web backend in any language sends (see README, "Queue jobs from your
web backend"); they do no image work themselves and run on the interactive queue.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from api_client.contract import (
    PRIORITIES,
    QUEUE_NOTIFICATIONS,
    TASK_CONTROL_JOB,
    TASK_NOTIFY_JOB,
    TASK_SUBMIT_JOB,
    JobState,
    MessageError,
    validate_control_kwargs,
    validate_submit_kwargs,
)
from jobs.lifecycle import announce_end
from jobs.producer import celery_sender
from worker.app import app
from worker.context import get_context

log = logging.getLogger(__name__)

MAX_NOTIFY_RETRIES = 8


_send = celery_sender(app)


def _notify_options(spec: dict[str, Any]) -> dict[str, Any]:
    return {"notify": {k: spec[k] for k in ("webhook", "notify_task") if spec.get(k)}}


@app.task(name=TASK_SUBMIT_JOB, acks_late=True)
def submit_job(**kwargs: Any) -> dict[str, Any]:
    """Create the job (idempotent on job_id) and enqueue its batches; a redelivery finishes the listing."""
    from jobs.producer import submit
    from jobs.queries import submit_query
    from jobs.sources import keys_from_storage
    from tagger.errors import PermanentError
    from tagger.storage import open_storage, validate_key

    try:
        spec = validate_submit_kwargs(kwargs)
    except MessageError as exc:
        log.error("refused a submit_job message: %s", exc)
        return {"refused": str(exc)}
    ctx = get_context()
    settings = ctx.settings
    common: dict[str, Any] = {
        "batch_size": spec.get("batch_size") or settings.batch_size,
        "queue": PRIORITIES[spec.get("priority") or "bulk"],
        "idempotency_key": spec.get("idempotency_key"),
        "time_limit": spec.get("time_limit"),
        "options": _notify_options(spec),
        "job_id": spec["job_id"],
    }
    storage_url = spec.get("storage_url") or settings.storage_url
    if spec.get("query"):
        job = submit_query(
            ctx.sessions,
            _send,
            query=spec["query"],
            tags=spec.get("tags") or [],
            storage_url=spec.get("storage_url"),
            default_storage=settings.storage_url,
            **common,
        )
        return {"job_id": job.job_id, "created": job.created}
    if not storage_url:
        return _refuse(spec, "no storage_url in the message and no TAGGER_STORAGE_URL on the worker")
    if spec.get("keys") is not None:
        try:
            keys = [validate_key(k) for k in spec["keys"]]  # refused before any I/O, with the reason on the job
        except PermanentError as exc:
            return _refuse(spec, str(exc), storage_url=storage_url)
        source = f"keys ({len(keys)})"
    else:
        keys = keys_from_storage(open_storage(storage_url), spec["prefix"])  # type: ignore[assignment]
        source = f"{storage_url.rstrip('/')}/{spec['prefix']}"
    job = submit(ctx.sessions, _send, source=source, storage_url=storage_url, keys=keys, **common)
    log.info("job %s: %s", job.job_id, "queued" if job.created else "already queued")
    return {"job_id": job.job_id, "created": job.created}


def _refuse(spec: dict[str, Any], reason: str, *, storage_url: str = "") -> dict[str, Any]:
    """Record the refusal on a failed job row, so the submitter can read why."""
    from sqlalchemy import update

    from jobs.producer import create_job
    from tagger.db.schema import Job, utcnow

    ctx = get_context()
    create_job(
        ctx.sessions,
        source="refused",
        storage_url=storage_url,
        batch_size=1,
        job_id=spec["job_id"],
        idempotency_key=spec.get("idempotency_key"),
        options=_notify_options(spec),
    )
    with ctx.sessions() as session, session.begin():
        session.execute(
            update(Job)
            .where(Job.id == spec["job_id"], Job.state == JobState.QUEUED)
            .values(state=JobState.FAILED, error=reason[:2000], listing_complete=True, finished_at=utcnow())
        )
    log.error("job %s refused: %s", spec["job_id"], reason)
    announce_end(_send, spec["job_id"])
    return {"job_id": spec["job_id"], "refused": reason}


@app.task(name=TASK_CONTROL_JOB, acks_late=True)
def control_job(**kwargs: Any) -> dict[str, Any]:
    from jobs import control

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

    from jobs.notify import DeliveryError, post_webhook
    from jobs.progress import failures, summary
    from tagger.db.schema import Job, utcnow

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
