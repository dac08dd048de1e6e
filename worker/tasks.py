"""The batch task: a job id and the ids of a batch's images in, suggestions and outcomes in the database out."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.exceptions import Retry
from sqlalchemy import select

from tagger.db.engine import out_of_slots
from tagger.db.schema import Job, ModelVersion
from tagger.worker.app import app, send
from tagger.worker.context import WorkerContext, get_context
from tagger_client.contract import (
    QUEUE_BULK,
    TASK_INDEX_VECTORS,
    TASK_TAG_BATCH,
    JobState,
    MessageError,
    validate_tag_batch_args,
)

if TYPE_CHECKING:
    from tagger.worker.loader import Failed

log = logging.getLogger(__name__)

PAUSE_RECHECK_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRIES = 100  # ~50 minutes at the capped backoff: long enough to wait out a database or broker outage

Outcome = dict[str, Any]


@app.task(name=TASK_TAG_BATCH, bind=True, acks_late=True, max_retries=None)
def tag_batch(self: Task, job_id: str, image_ids: list[int]) -> Outcome:
    try:
        job_id, image_ids = validate_tag_batch_args([job_id, image_ids])
    except MessageError as exc:
        log.error("refused message %s: %s", self.request.id, exc)
        return {"refused": 1}
    try:
        return run_batch(job_id, image_ids)
    except Retry:
        raise
    except Exception as exc:
        # Nothing is lost: the batch is retried with backoff (writes are idempotent). Each image's
        # attempts are counted in the database before its work starts, so an image that keeps
        # failing is given up with its reason by a later delivery; a database outage (nothing
        # counted) is simply waited out.
        countdown = min(MAX_BACKOFF_SECONDS, 2**self.request.retries) + random.random()
        if _is_infrastructure(exc):
            log.warning("job %s: batch of %d waits for the database/broker: %s", job_id, len(image_ids), exc)
            _note_waiting(job_id, exc)
            if out_of_slots(exc):
                _let_go_of_idle_connections()
        else:
            log.exception("job %s: batch of %d failed; retrying", job_id, len(image_ids))
            _note_error(job_id, image_ids, f"{type(exc).__name__}: {exc}")
        if self.request.retries >= MAX_RETRIES:
            log.error(
                "job %s: dropping a batch after %d retries; `tagger jobs reconcile` re-queues it",
                job_id,
                MAX_RETRIES,
            )
            return {"dropped": len(image_ids)}
        raise self.retry(countdown=countdown) from exc


def _is_infrastructure(exc: BaseException) -> bool:
    """A database or broker that is down or cut off: waited out without using the images' attempts."""
    import psycopg
    from sqlalchemy.exc import DBAPIError, OperationalError

    return isinstance(exc, OperationalError | psycopg.OperationalError | ConnectionError | TimeoutError) or (
        isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
    )


def _let_go_of_idle_connections() -> None:
    """Close this process's idle pooled connections while it waits: a fleet one connection short then takes
    turns and slows down, where every process holding an idle connection while waiting for a second one
    stopped them all (a livelock with every slot idle in tagger's own pools)."""
    from tagger.db.engine import let_go_of_idle

    ctx = get_context()
    let_go_of_idle(ctx.engine, ctx.sessions.kw["bind"])


def _note_waiting(job_id: str, exc: BaseException) -> None:
    """Say on the job why it waits (its row, else the broker), so that every reader shows it."""
    from tagger.worker.liveness import note_waiting, reason

    note_waiting(get_context(), job_id, reason(exc, out_of_connections=out_of_slots(exc)))


def _note_error(job_id: str, image_ids: list[int], error: str) -> None:
    from tagger.worker.claims import note_error

    try:
        note_error(get_context().sessions, job_id, image_ids, error)
    except Exception:  # best effort: the retry matters more than the note
        log.warning("could not record the error of job %s", job_id, exc_info=True)


@dataclass(frozen=True)
class JobView:
    """What a batch needs to know about its job, read once per delivery."""

    id: str
    state: JobState
    queue: str
    max_attempts: int
    active_version_id: int | None  # as this delivery read it: the version its images must be tagged by
    content_hash: bool = False  # the job records each image's SHA-256
    # Cancelled, or past its time limit, with its listing complete: no batch of it can tag an image again
    # (tagger.worker.ended), so once none of its images is pending the process remembers it.
    over_for_good: bool = False


def run_batch(job_id: str, image_ids: list[int], ctx: WorkerContext | None = None) -> Outcome:
    """One delivery of a batch, as named steps: gate the job -> claim -> tag -> record -> schedule retries.

    Callable without Celery (tests pass a context of their own, else this process's); each step is a
    function of its own. A batch of a job this process knows to be over for good is answered first, with
    no database read and no model work.
    """
    from tagger.logs import log_context
    from tagger.worker.prometheus import IN_FLIGHT

    ctx = ctx or get_context()
    if job_id in ctx.ended:
        return {"ended": len(image_ids)}
    with IN_FLIGHT.track_inprogress(), log_context(job=job_id):
        return _run_batch(ctx, job_id, image_ids)


def _run_batch(ctx: WorkerContext, job_id: str, image_ids: list[int]) -> Outcome:
    t_claim = time.perf_counter()
    fresh = _claim_fresh(ctx, job_id, image_ids)
    if fresh is not None:
        return _tag_and_record(ctx, *fresh, t_claim)
    job = _read_job(ctx, job_id)
    if job is None:
        log.error("job %s does not exist; dropping a batch of %d images", job_id, len(image_ids))
        return {"dropped": len(image_ids)}
    gated = _gate(ctx, job, image_ids)
    if gated is not None:
        return gated
    claimed = _claim(ctx, job, image_ids)
    if isinstance(claimed, dict):
        return claimed
    return _tag_and_record(ctx, job, claimed, t_claim)


def _claim_fresh(ctx: WorkerContext, job_id: str, image_ids: list[int]) -> tuple[JobView, list[Any]] | None:
    """A first delivery to a running job in one round trip (PostgreSQL); None takes the general path."""
    if ctx.engine.dialect.name != "postgresql":
        return None
    from tagger.worker.claims import claim_fresh

    claim = claim_fresh(ctx.engine, job_id, image_ids)
    if claim is None:
        return None
    job = JobView(
        job_id, JobState(claim.state), claim.queue, claim.max_attempts, claim.active_version_id, claim.content_hash
    )
    _hold(ctx, "claimed", job_id, claim.items)
    return job, claim.items


def _read_job(ctx: WorkerContext, job_id: str) -> JobView | None:
    """The job's state as this delivery sees it; a job past its time limit fails here, once."""
    from tagger.jobs.control import expire_if_overdue, overdue, skip_pending

    with ctx.sessions() as session:  # the job, the active version, and whether the job is past its time limit
        active = select(ModelVersion.id).where(ModelVersion.is_active.is_(True)).scalar_subquery()
        found = session.execute(select(Job, active, overdue()).where(Job.id == job_id)).first()
        if found is None:
            return None
        row, active_id, past_deadline = found
        hashing = bool((row.options or {}).get("content_hash"))
        job = JobView(row.id, JobState(row.state), row.queue, row.max_attempts, active_id, hashing)
        listed = row.listing_complete
    if past_deadline:
        with ctx.sessions() as session, session.begin():
            expired = expire_if_overdue(session, job_id)
        if expired:
            with ctx.sessions() as session, session.begin():  # a producer's page that committed after that skip
                skip_pending(session, job_id)
            log.warning("job %s passed its time limit; its remaining batches are skipped", job_id)
            notify(job_id)
            drop_queued(job_id, job.queue)
            job = replace(job, state=JobState.FAILED)
    final = job.state == JobState.CANCELLED or (job.state == JobState.FAILED and bool(past_deadline))
    return replace(job, over_for_good=final and listed)


def _gate(ctx: WorkerContext, job: JobView, image_ids: list[int]) -> Outcome | None:
    """Before any I/O: a cancelled or failed job's batches are skipped, a paused job's wait in the broker."""
    from tagger.worker.sink import record_batch

    if job.state in (JobState.CANCELLED, JobState.FAILED):
        from tagger.worker.prometheus import IMAGES

        counts = record_batch(ctx.engine, job_id=job.id, model_version_id=None, skipped=image_ids)
        IMAGES.labels("skipped").inc(counts.skipped)
        if job.over_for_good:
            from tagger.jobs.control import has_pending

            with ctx.sessions() as session:
                if not has_pending(session, job.id):
                    ctx.ended.add(job.id)  # its other batches are answered without the database from now on
        return {"skipped": counts.skipped}
    if job.state == JobState.PAUSED:
        # Back to the broker with a delay; this delivery is acknowledged, so no worker holds it meanwhile.
        tag_batch.apply_async(args=[job.id, image_ids], queue=job.queue, countdown=PAUSE_RECHECK_SECONDS)
        return {"deferred": len(image_ids)}
    return None


def _claim(ctx: WorkerContext, job: JobView, image_ids: list[int]) -> list[Any] | Outcome:
    """The images this delivery works on, with their attempts so far; an attempt is counted before the work.

    Images out of attempts fail with their last reason. A batch an earlier delivery never finished
    (a crash, a kill, a timeout) is split one image per message, so a poison image fails alone.
    """
    from tagger.worker.claims import count_attempt, pending_items
    from tagger.worker.sink import Refused, record_batch

    pending = pending_items(ctx.sessions, job.id, image_ids)
    if not pending:
        return {"already_done": len(image_ids)}  # a redelivery of a batch that was written
    given_up = [p for p in pending if p.attempts >= job.max_attempts]
    todo = [p for p in pending if p.attempts < job.max_attempts]
    if given_up:
        from tagger.worker.prometheus import FAILURES, IMAGES

        refused = [Refused(p.image_id, _gave_up(p.attempts, p.last_error)) for p in given_up]
        counts = record_batch(ctx.engine, job_id=job.id, model_version_id=None, refused=refused)
        IMAGES.labels("failed").inc(counts.failed)
        FAILURES.labels("attempts").inc(counts.failed)
        if counts.closed:
            notify(job.id)
    if len(todo) > 1 and any(p.attempts > 0 for p in todo):
        for p in todo:
            tag_batch.apply_async(args=[job.id, [p.image_id]], queue=job.queue)
        return {"split": len(todo)}
    if not todo:
        return {"failed": len(given_up)}
    count_attempt(ctx.sessions, job.id, [p.image_id for p in todo])
    _hold(ctx, "claimed", job.id, todo)
    return todo


def _tag_and_record(ctx: WorkerContext, job: JobView, todo: list[Any], t_claim: float) -> Outcome:
    """storage -> loader -> inference -> sink, timed per stage (from `t_claim`, when the delivery began
    reading its job); retryable storage errors are queued again."""
    from tagger.logs import model_version
    from tagger.worker import prometheus
    from tagger.worker.inference import device_lock, suggestion_rows
    from tagger.worker.loader import Item, load_batch
    from tagger.worker.sink import Refused, record_batch

    served = ctx.runtime.current(job.active_version_id)  # a swap to a newly active version counts as claim time
    model = served.model
    model_version.set(model.version)
    t_start = time.perf_counter()
    loaded, failed = load_batch(
        [Item(p.image_id, ctx.storage(p.storage_url), p.key) for p in todo],
        preprocess=model.preprocess,
        pool=ctx.pool,
        max_bytes=ctx.settings.max_image_bytes,
        read_timeout=ctx.settings.read_timeout,
        on_device=served.on_device,
        content_hash=job.content_hash,
    )
    t_loaded = time.perf_counter()
    _hold(ctx, "fetched", job.id, todo)
    # A storage hiccup is retried while the image has attempts left; then it fails with the error.
    attempts = {p.image_id: p.attempts for p in todo}
    retry_ids = [f.image_id for f in failed if f.retryable and attempts[f.image_id] + 1 < job.max_attempts]
    failed = [f for f in failed if f.image_id not in set(retry_ids)]
    rows = None
    if loaded:
        import torch

        batch = torch.stack([item.pixels for item in loaded])
        with device_lock:
            out = model.infer(batch)
        ids = [item.image_id for item in loaded]
        rows = suggestion_rows(
            out.probs, model.thresholds, ids, model.tag_ids, out.embeddings, out.energy, model.meta.energy_quantiles
        )
        rows = replace(rows, fingerprints=[item.fingerprint for item in loaded])
    for f in failed:
        log.info("job %s: image %d failed: %s", job.id, f.image_id, f.reason)
    t_inferred = time.perf_counter()
    _hold(ctx, "inferred", job.id, todo)
    counts = record_batch(
        ctx.engine,
        job_id=job.id,
        model_version_id=model.version_id,
        tagged=rows if rows is not None else (),
        refused=[Refused(f.image_id, f.reason) for f in failed],
    )
    _hold(ctx, "written", job.id, todo)
    t_written = time.perf_counter()
    for stage, seconds in (
        ("claim", t_start - t_claim),
        ("load", t_loaded - t_start),
        ("inference", t_inferred - t_loaded),
        ("write", t_written - t_inferred),
    ):
        prometheus.STAGE_SECONDS.labels(stage).observe(seconds)
    prometheus.IMAGES.labels("tagged").inc(counts.done)
    if counts.failed:
        prometheus.IMAGES.labels("failed").inc(counts.failed)
        credit_failures(failed, counts.failed_ids)
    prometheus.batch_written(counts.done + counts.failed)
    prometheus.gpu_memory(served.model.device.type)
    log.info(
        "job %s: batch of %d in %.2fs: claim %.3fs, fetch+decode %.2fs, inference %.2fs, write %.3fs",
        job.id,
        len(todo),
        time.perf_counter() - t_claim,
        t_start - t_claim,
        t_loaded - t_start,
        t_inferred - t_loaded,
        t_written - t_inferred,
    )
    if counts.closed:
        notify(job.id)
        index_vectors.apply_async(args=[model.version_id], queue=QUEUE_BULK)
    if retry_ids:
        countdown = min(MAX_BACKOFF_SECONDS, 2 ** attempts[retry_ids[0]]) + random.random()
        tag_batch.apply_async(args=[job.id, retry_ids], queue=job.queue, countdown=countdown)
    return {"done": counts.done, "failed": counts.failed, "model_version": model.version_id}


@app.task(name=TASK_INDEX_VECTORS, acks_late=True)
def index_vectors(version_id: int) -> Outcome:
    """Build a version's vector index up to its newest image, off the hot path (`tagger.db.vectors`), when a
    job it tagged has ended and enough images have gathered past the index it has."""
    from tagger.db.vectors import index_vectors as build

    if not isinstance(version_id, int) or isinstance(version_id, bool):
        log.error("refused an index message for version %r: not a version id", version_id)
        return {"refused": 1}
    cutoff = build(get_context().sessions.kw["bind"], version_id)
    if cutoff is not None:
        log.info("indexed the vectors of model version %d up to image %d", version_id, cutoff)
    return {"indexed_upto": cutoff}


def credit_failures(failed: Sequence[Failed], moved: frozenset[int]) -> None:
    """Count each refusal the write moved by its class; one an earlier delivery wrote is not counted again
    (the fence moved only part of the batch: which part, not how many, says whose class it is)."""
    from tagger.worker.prometheus import FAILURES

    for f in failed:
        if f.image_id in moved:
            FAILURES.labels(f.kind).inc()


def _hold(ctx: WorkerContext, stage: str, job_id: str, todo: list[Any]) -> None:
    """A test's hold point (tagger.worker.holds); one attribute read unless TAGGER_TEST_HOLDS=1."""
    if ctx.settings.test_holds:
        from tagger.worker.holds import hold

        task_id = tag_batch.request.id if tag_batch.request else None
        ids = [p.image_id for p in todo]
        hold(ctx.settings.var_dir, stage, job_id=job_id, image_ids=ids, task_id=task_id)


def _gave_up(attempts: int, last_error: str | None) -> str:
    cause = last_error or "the worker processing it died, was killed or timed out each time"
    return f"gave up after {attempts} attempts: {cause}"


def drop_queued(job_id: str, queue: str) -> None:
    """The job is over for good: take its batches out of the broker's queue, so that a job queued behind them
    does not wait for them (best effort: a batch left there is answered by `tagger.worker.ended`)."""
    from tagger.broker.send import drop_queued_batches

    drop_queued_batches(send, job_id, queue)


def notify(job_id: str) -> None:
    from tagger.jobs.lifecycle import announce_end

    announce_end(send, job_id)
