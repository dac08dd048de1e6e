"""Follow a job until it ends, with a progress bar for people and a plain summary for scripts."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from tagger.db.schema import Job, JobItem
from tagger.errors import WorkersExitedError
from tagger_client.contract import ItemState, JobState
from tagger_client.status import JobStatus

if TYPE_CHECKING:
    from tagger.broker.waiting import Note

JobSummary = JobStatus  # one shape for the CLI, the workers and the client

NOTE_EVERY_SECONDS = 5.0  # how often a follower asks the broker why a job waits: the worker rewrites it each retry


def summary(sessions: sessionmaker[Session], job_id: str) -> JobSummary:
    from tagger.errors import NotFoundError

    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}; see `tagger jobs list`")
        return _summarise(job)


def recent(sessions: sessionmaker[Session], limit: int) -> list[JobSummary]:
    """The newest jobs first, in one query."""
    with sessions() as session:
        return [_summarise(j) for j in session.scalars(select(Job).order_by(Job.created_at.desc()).limit(limit))]


def _summarise(job: Job) -> JobSummary:
    return JobSummary(
        id=job.id,
        state=JobState(job.state),
        source=job.source,
        total=job.total,
        done=job.done,
        failed=job.failed,
        skipped=job.skipped,
        listing_complete=job.listing_complete,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        passed_over=dict(job.passed_over or {}),
        progress_at=job.progress_at,
        waiting_reason=job.waiting_reason,
        waiting_since=job.waiting_since,
        unchanged=job.unchanged,
    )


def with_broker_note(job: JobSummary, broker_url: str | None) -> JobSummary:
    """The job with the broker's note on why it waits, when its row has none: a worker that could not
    reach the database to say so said it there. A note older than the job's last progress is over."""
    return with_broker_notes([job], broker_url)[0]


def with_broker_notes(jobs: list[JobSummary], broker_url: str | None) -> list[JobSummary]:
    """`with_broker_note` for several jobs, with one read of the broker for all of them."""
    asked = [job.id for job in jobs if _may_take_note(job)]
    if not asked or not broker_url:
        return jobs
    from tagger.broker.waiting import read_all

    notes = read_all(broker_url, asked)
    return [with_note(job, notes.get(job.id)) for job in jobs]


def _may_take_note(job: JobSummary) -> bool:
    return not job.waiting_reason and not job.state.finished


def with_note(job: JobSummary, note: Note | None) -> JobSummary:
    """The job with `note` (the broker's) as why it waits, unless its row says why, it ended, or it made
    progress since the note was last written."""
    if note is None or not _may_take_note(job):
        return job
    from dataclasses import replace

    moved = job.progress_at
    if moved is not None and moved.tzinfo is None:
        moved = moved.replace(tzinfo=UTC)  # SQLite's timestamps come back naive, in UTC
    if moved is not None and note.updated <= moved:
        return job
    since = note.since if moved is None else max(note.since, moved)  # a wait that began before progress: since then
    return replace(job, waiting_reason=note.reason, waiting_since=since)


def failures(sessions: sessionmaker[Session], job_id: str, limit: int = 1000, after: int = 0) -> list[tuple[str, str]]:
    """(key, reason) for the job's failed images after image id `after`, in image id order (one range of the
    (job, state, image) index); a job over several storages names each by URL."""
    with sessions() as session:
        several = not session.scalar(select(Job.storage_url).where(Job.id == job_id))
    return [
        (f"{o['storage']}/{o['key']}" if several else str(o["key"]), str(o["error"] or ""))
        for o in outcomes(sessions, job_id, limit=limit, after=after, state=ItemState.FAILED)
    ]


def resolve(sessions: sessionmaker[Session], job_id: str) -> str:
    """A full job id from an id or a unique prefix of at least 4 characters (as `git` takes commits)."""
    from tagger.errors import ConfigError, NotFoundError

    ref = job_id.strip().lower()
    if len(ref) < 4:
        raise ConfigError(f"job id {job_id!r} is too short: give at least 4 characters")
    with sessions() as session:
        found = list(session.scalars(select(Job.id).where(Job.id.startswith(ref, autoescape=True)).limit(3)))
    if not found:
        raise NotFoundError(f"no job {job_id!r}; see `tagger jobs list`")
    if len(found) > 1:
        raise ConfigError(f"job id {job_id!r} is ambiguous ({', '.join(found[:2])}, ...): give more characters")
    return found[0]


def wait(
    sessions: sessionmaker[Session],
    job_id: str,
    *,
    timeout: float | None = None,
    poll: float = 0.5,
    show_progress: bool = True,
    alive: Callable[[], bool] | None = None,
    progress_every: float = 15.0,
    idle_warning: float = 30.0,
    say: Callable[[str], None] | None = None,
    broker_url: str | None = None,
    live_workers: Callable[[], int | None] | None = None,
    note_every: float = NOTE_EVERY_SECONDS,
    file: TextIO | None = None,
) -> JobSummary:
    """Block until the job reaches a finished state (or timeout), following it for people.

    On a terminal (`file`, default stderr): a progress bar whose rate is the job's own (the same figure as
    the final summary), and why the job waits when a worker said so. Elsewhere (logs, CI): one progress
    line every `progress_every` seconds, with why the job waits in full. A worker says why on the job's
    row, read at each poll, or in the broker at `broker_url`, read at most every `note_every` seconds. A job
    that stays queued for `idle_warning` seconds gets one line saying why: the wait a worker noted, or that
    no worker is running when `live_workers` (the registry's count; None: unknown) says none is.
    """
    from tqdm import tqdm

    deadline = None if timeout is None else time.monotonic() + timeout
    started = last_line = time.monotonic()
    warned = False
    note: Note | None = None
    note_read = -note_every
    bar = tqdm(
        total=0,
        unit="img",
        desc=f"job {job_id[:8]}",
        disable=None if show_progress else True,  # None: no bar when not a terminal
        dynamic_ncols=True,
        file=file,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
    )
    lines = show_progress and bar.disable and say is not None
    shown = not bar.disable or say is not None  # someone reads why the job waits
    try:
        while True:
            now = time.monotonic()
            current = summary(sessions, job_id)
            if broker_url and shown and _may_take_note(current) and now - note_read >= note_every:
                from tagger.broker.waiting import read

                note, note_read = read(broker_url, job_id), now
            current = with_note(current, note)
            bar.total = current.total
            bar.n = current.done + current.failed + current.skipped
            bar.set_postfix_str(bar_postfix(current), refresh=False)
            bar.refresh()
            if current.state.finished:
                return current
            if lines and now - last_line >= progress_every and say is not None:
                rate = f"{current.rate:.1f} img/s" if current.rate else "-"
                eta = f", about {current.eta_seconds:.0f}s left" if current.eta_seconds and not current.waiting else ""
                why = f"; {current.waiting}" if current.waiting else ""
                say(
                    f"job {job_id[:8]}: {current.state.value}, {bar.n}/{current.total} ({current.done} tagged, "
                    f"{current.failed} failed), {rate}{eta}{why}"
                )
                last_line = now
            if not warned and current.state == JobState.QUEUED and now - started >= idle_warning and say is not None:
                idle = _idle_words(current, idle_warning, live_workers)
                if idle:
                    say(idle)
                warned = True
            if alive is not None and not alive():
                raise WorkersExitedError(
                    f"the worker processes exited while job {job_id} was {current.state.value}", job_id=job_id
                )
            if deadline is not None and now > deadline:
                raise TimeoutError(f"job {job_id} still {current.state.value} after {timeout}s")
            time.sleep(poll)
    finally:
        bar.close()


def bar_postfix(job: JobSummary) -> str:
    """What the bar shows after its counts: the job's rate, failures and state, and, while it waits, for how
    long and why in a few words (the bar has one line; the progress lines and `jobs show` give the error)."""
    rate = f"{job.rate:.1f} img/s" if job.rate else "-"
    shown = f"{rate}, {job.failed} failed, {job.state.value}"
    return f"{shown}, {job.waiting_short}" if job.waiting_short else shown


def _idle_words(job: JobSummary, seconds: float, live_workers: Callable[[], int | None] | None) -> str | None:
    """Why a job queued for `seconds` has not started: the wait a worker noted, or that no worker runs (only
    when the registry says so, or cannot be asked); None while live workers are simply busy elsewhere."""
    if job.waiting:
        return f"job {job.id[:8]} has been queued for {seconds:.0f}s, {job.waiting}"
    count = live_workers() if live_workers is not None else None
    if count:
        return None
    return (
        f"job {job.id[:8]} has been queued for {seconds:.0f}s and no worker has taken a batch: "
        "is a `tagger worker` running against this broker and consuming the job's queue?"
    )


def outcomes(
    sessions: sessionmaker[Session],
    job_id: str,
    limit: int = 1000,
    *,
    after: int = 0,
    state: ItemState | None = None,
) -> list[dict[str, object]]:
    """Per-image outcomes after image id `after`, in image id order: image id, storage, key, state, attempts,
    error and the model version that tagged it. One range of the primary key (job, image), or of
    (job, state, image) for one state, however big the job: the next page starts after the last image id."""
    from tagger.db.schema import ModelVersion
    from tagger_client.paging import locations

    with sessions() as session:
        rows = session.execute(item_range(job_id, after=after, state=state).limit(limit)).all()
        where = locations(session.connection(), [row.image_id for row in rows])
        versions = {row.model_version_id for row in rows} - {None}
        names = dict(
            session.execute(select(ModelVersion.id, ModelVersion.version).where(ModelVersion.id.in_(versions))).all()
        )
    return [
        {
            "image_id": row.image_id,
            "storage": where[row.image_id][0],
            "key": where[row.image_id][1],
            "state": row.state,
            "attempts": row.attempts,
            "error": row.error,
            "model_version": names.get(row.model_version_id),
        }
        for row in rows
    ]


def item_range(
    job_id: str, *, after: int = 0, state: ItemState | None = None
) -> Select[int, str, int, str | None, int | None]:
    """The job's items after image id `after` (of one state, or all), in image id order: a range of the
    primary key (job, image), or of (job, state, image)."""
    query = select(JobItem.image_id, JobItem.state, JobItem.attempts, JobItem.error, JobItem.model_version_id)
    query = query.where(JobItem.job_id == job_id, JobItem.image_id > after)
    if state is not None:
        query = query.where(JobItem.state == state)
    return query.order_by(JobItem.image_id)


def items_pruned_at(sessions: sessionmaker[Session], job_id: str) -> datetime | None:
    """When `tagger jobs prune` deleted the job's per-image rows of done and skipped images (None: never)."""
    with sessions() as session:
        return session.scalar(select(Job.items_pruned_at).where(Job.id == job_id))


def delivery(sessions: sessionmaker[Session], job_id: str) -> dict[str, object] | None:
    """The job's webhook delivery as recorded: state (delivered, retrying, given up), attempts, last error."""
    with sessions() as session:
        options = session.scalar(select(Job.options).where(Job.id == job_id)) or {}
    found = options.get("webhook")
    return dict(found) if isinstance(found, dict) else None
