"""Create a job and fill it with batches: each batch is committed to the database, then enqueued.

An entry that cannot be tagged (a file name that is not UTF-8, a control character, a `..`) becomes
one failed item with a readable reason, and the job goes on. A source that cannot be read at all
(a folder that does not exist, a missing bucket) is refused before the job is created; one that
fails midway fails the job with the reason, never leaving it half-enqueued and queued for ever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from tagger.broker.send import Send, send_tag_batches
from tagger.db.arrays import array_literal
from tagger.db.images import ImageRecord, image_records, sqlite_now, storage_id
from tagger.db.schema import Job, ModelVersion, utcnow
from tagger.db.upsert import affected
from tagger.errors import ConfigError, InvalidKeyError
from tagger.jobs.control import skip_pending
from tagger.jobs.incremental import Incremental, Rehash
from tagger.jobs.lifecycle import announce_end, fail, finish_if_complete
from tagger.jobs.sources import PassedOver, chunked
from tagger.settings import Settings
from tagger.storage import UNKNOWN, Fingerprint, Listed, canonical_url, open_storage, readable, validate_key
from tagger_client.contract import ItemState, JobSpec, JobState

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 5  # deliveries per image: a poison image fails with a reason instead of looping


@dataclass(frozen=True)
class Submitted:
    job_id: str
    created: bool


def create_job(
    sessions: sessionmaker[Session],
    spec: JobSpec,
    *,
    source: str,
    storage_url: str,
    batch_size: int,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    content_hash: bool = False,
) -> Submitted:
    """Insert the job row; the same idempotency key (or job id) always returns the same job.

    `created` is also true for an existing job whose listing never completed (a producer that
    crashed mid-listing), so that submitting again finishes the listing. With `content_hash`, the
    workers record the SHA-256 of each image they tag for this job.
    """
    key = spec.idempotency_key
    notify = {name: value for name, value in (("webhook", spec.webhook), ("notify_task", spec.notify_task)) if value}
    options: dict[str, object] = {"notify": notify}
    if content_hash:
        options["content_hash"] = True
    with sessions() as session, session.begin():
        found = session.execute(
            select(Job.id, Job.listing_complete).where(
                (Job.id == spec.job_id) | (Job.idempotency_key == key) if key else Job.id == spec.job_id
            )
        ).first()
        if found:
            return Submitted(found[0], created=not found[1])
        session.add(
            Job(
                id=spec.job_id,
                source=source,
                storage_url=storage_url,
                queue=spec.queue,
                batch_size=batch_size,
                idempotency_key=key,
                options=options,
                max_attempts=max_attempts,
                deadline_at=utcnow() + timedelta(seconds=spec.time_limit) if spec.time_limit else None,
            )
        )
    return Submitted(spec.job_id, created=True)


def enqueue_keys(
    sessions: sessionmaker[Session],
    send: Send,
    *,
    job_id: str,
    keys: Iterable[str] | Iterable[Listed],
    storage_url: str,
    batch_size: int,
    queue: str,
    incremental: Incremental | None = None,
) -> int:
    """Stream keys (or a listing's entries) into batches under one storage root; returns how many new
    items the job received.

    Each key is validated before any I/O; one that cannot be tagged is a failed item, named readably.
    Keys go to the database a page at a time (PAGE keys: their images in one short transaction, their
    items in the next), then out as messages of `batch_size` image ids: memory stays flat, and a million
    keys take seconds, not minutes. With
    `incremental`, what is unchanged since the active version tagged it is passed over: counted on the
    job (`unchanged`), never an item; the page's lookup of image ids brings what the comparison needs.
    """
    with sessions() as session, session.begin():
        storage = storage_id(session, storage_url)
    total = unchanged = 0
    with _Publisher(send, job_id, batch_size, queue) as publish:
        for chunk in chunked(keys, _page(batch_size)):
            listed = dict(_entry(e) for e in chunk)  # key -> what the listing said of its bytes; one per key
            good: list[str] = []
            bad: dict[str, str] = {}  # readable name -> reason
            for key in listed:
                try:
                    good.append(validate_key(key))
                except InvalidKeyError as exc:
                    bad[readable(key)] = str(exc)
            with sessions() as session, session.begin():
                records = image_records(session, storage, good + list(bad))
            # Decided between two transactions: with hashing it reads files, and no write lock may wait on that
            # (SQLite has one writer). Images committed without items meanwhile are harmless (a crash between
            # pages leaves the same); the resubmission that finishes the listing finds them.
            todo, passed = _compare(incremental, good, listed, records)
            unchanged += passed
            pending = [records[k].id for k in todo]
            failed = {records[name].id: reason for name, reason in bad.items()}
            with sessions() as session, session.begin():
                batches = -(-len(pending) // batch_size)
                added = _add_items(
                    session, job_id, pending, failed, batches=batches, unchanged=unchanged if passed else None
                )
            total += added.items
            if not _page_done(sessions, publish, job_id, added, pending):
                break
    return total


def _entry(entry: str | Listed) -> tuple[str, Fingerprint]:
    return (entry, UNKNOWN) if isinstance(entry, str) else entry


def _compare(
    incremental: Incremental | None, good: list[str], listed: dict[str, Fingerprint], records: dict[str, ImageRecord]
) -> tuple[list[str], int]:
    """(the keys of a page to tag, how many it passed over): all of them, unless the job is incremental."""
    if incremental is None:
        return good, 0
    return incremental.split([Listed(k, listed[k]) for k in good], records)


class _Publisher:
    """Sends a committed page's messages from a thread while the next page goes to the database: the
    producer's two halves (database round trips, message building) overlap. One page in flight at a
    time, so memory stays flat; a failed send is raised by the next page or at the end."""

    def __init__(self, send: Send, job_id: str, batch_size: int, queue: str) -> None:
        self.args = (send, job_id, batch_size, queue)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="publish")
        self.inflight: Future[None] | None = None

    def __call__(self, ids: list[int]) -> None:
        self._settle()
        send, job_id, batch_size, queue = self.args
        self.inflight = self.pool.submit(send_batches, send, job_id, ids, batch_size, queue)

    def _settle(self) -> None:
        if self.inflight is not None:
            self.inflight.result()
            self.inflight = None

    def __enter__(self) -> _Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self._settle()
        finally:
            self.pool.shutdown(wait=True)


def enqueue_ids(
    sessions: sessionmaker[Session], send: Send, *, job_id: str, ids: Iterable[int], batch_size: int, queue: str
) -> int:
    """Stream existing images (a database query) into batches; returns how many new items the job received."""
    total = 0
    with _Publisher(send, job_id, batch_size, queue) as publish:
        for chunk in chunked(ids, _page(batch_size)):
            with sessions() as session, session.begin():
                added = _add_items(session, job_id, chunk, {}, batches=-(-len(chunk) // batch_size))
            total += added.items
            if not _page_done(sessions, publish, job_id, added, chunk):
                break
    return total


PAGE = 2048  # keys per page of database round trips while enqueueing: big enough to amortise them


def _page(batch_size: int) -> int:
    """Keys per transaction: a whole number of batches, about PAGE keys."""
    return max(batch_size, PAGE // batch_size * batch_size)


@dataclass(frozen=True)
class _Added:
    items: int  # rows inserted
    ended: bool  # the job had ended (cancelled, expired) when the page went in


def _add_items(
    session: Session,
    job_id: str,
    pending: list[int],
    failed: dict[int, str],
    *,
    batches: int,
    unchanged: int | None = None,
) -> _Added:
    """Insert a page's items (pending, or failed with their reason) and move the job's counters once,
    reading the job's state as they move (items before the job row: every write's order).

    An item already in the job (a listing resumed after a crash, or a resubmission racing this one)
    is left as it is: ON CONFLICT DO NOTHING, and only the rows inserted are counted. `unchanged` is the
    listing's count so far of images passed over, set rather than added, so a resumed listing (which
    lists again from the start) counts each image once.
    """
    listed = set(pending)
    failed = {i: reason for i, reason in failed.items() if i not in listed}
    new_pending = _insert_items(session, job_id, list(dict.fromkeys(pending)), ItemState.PENDING)
    new_failed = _insert_items(session, job_id, list(failed), ItemState.FAILED, [r[:2000] for r in failed.values()])
    state = None
    if new_pending or new_failed or batches or unchanged is not None:
        counts = {
            "total": Job.total + new_pending + new_failed,
            "failed": Job.failed + new_failed,
            "batches": Job.batches + batches,
        }
        state = session.scalar(
            update(Job)
            .where(Job.id == job_id)
            .values(**counts, **({"unchanged": unchanged} if unchanged is not None else {}))
            .returning(Job.state)
        )
    return _Added(new_pending + new_failed, _ended(state))


def _ended(state: str | None) -> bool:
    return state is not None and JobState(state).finished


def _page_done(
    sessions: sessionmaker[Session], publish: Callable[[list[int]], None], job_id: str, added: _Added, ids: list[int]
) -> bool:
    """After a page's commit: its messages go out, unless the job ended meanwhile (cancelled, or failed past its
    time limit). Then the listing stops, and what it left pending is skipped, so that the job adds up and its
    workers can forget it (tagger.worker.ended); False."""
    if not added.ended:
        publish(ids)
        return True
    with sessions() as session, session.begin():
        skipped = skip_pending(session, job_id)
    log.info("job %s ended while it was listed: the listing stops (%d image(s) it added skipped)", job_id, skipped)
    return False


_ITEMS_POSTGRES = """
INSERT INTO job_items (job_id, image_id, state, error, attempts, updated_at)
SELECT :job, r.image_id, :state, r.error, 0, now()
FROM unnest(CAST(:ids AS bigint[]), CAST(:errors AS text[])) AS r(image_id, error)
ON CONFLICT (job_id, image_id) DO NOTHING
"""


def _insert_items(
    session: Session, job_id: str, ids: list[int], state: ItemState, errors: list[str] | None = None
) -> int:
    """One statement (PostgreSQL) or one executemany (SQLite) for a page's items; returns the rows inserted."""
    if not ids:
        return 0
    if session.get_bind().dialect.name == "postgresql":  # unnest pads a missing (NULL) errors array with NULLs
        params = {"job": job_id, "state": state.value, "ids": array_literal(ids), "errors": errors}
        return affected(session.execute(text(_ITEMS_POSTGRES), params))
    reasons: list[str | None] = list(errors) if errors is not None else [None] * len(ids)
    now = sqlite_now(session)
    rows = [(job_id, i, state.value, e, now) for i, e in zip(ids, reasons, strict=True)]
    sql = (
        "INSERT OR IGNORE INTO job_items (job_id, image_id, state, error, attempts, updated_at) "
        "VALUES (?, ?, ?, ?, 0, ?)"
    )
    return int(session.connection().exec_driver_sql(sql, rows).rowcount)


def submit(sessions: sessionmaker[Session], send: Send, spec: JobSpec, settings: Settings) -> Submitted:
    """Create the job `spec` describes and, unless its listing already completed, fill it with batches.

    Defaults come from `settings` once, here: the batch size and, for keys and prefixes, the storage.
    A source that does not exist raises before the job is created; any failure while listing fails
    the job with the reason (and is raised); an interrupted listing is finished by submitting again.
    """
    from tagger.jobs.queries import query_ids
    from tagger.jobs.sources import keys_for

    batch_size = spec.batch_size or settings.batch_size
    hashing = spec.content_hash if spec.content_hash is not None else bool(settings.content_hash)
    passed_over = PassedOver()
    if spec.query is not None:
        storage_url = canonical_url(spec.storage_url) if spec.storage_url else ""
        ids = query_ids(sessions, spec, storage_url=storage_url)
        submitted = create_job(
            sessions,
            spec,
            source=spec.describe(),
            storage_url=storage_url,
            batch_size=batch_size,
            content_hash=hashing,
        )
    else:
        if not (spec.storage_url or settings.storage_url):
            raise ConfigError("no storage: pass a storage URL or set TAGGER_STORAGE_URL (file:///dir or s3://bucket)")
        storage_url = canonical_url(spec.storage_url or settings.storage_url)
        check_source(spec, storage_url)
        keys = keys_for(spec, storage_url, passed_over)
        submitted = create_job(
            sessions,
            spec,
            source=spec.describe(storage_url),
            storage_url=storage_url,
            batch_size=batch_size,
            content_hash=hashing,
        )
    if not submitted.created:
        return submitted
    job_id, queue = submitted.job_id, spec.queue
    try:
        if spec.query is not None:
            enqueue_ids(sessions, send, job_id=job_id, ids=ids, batch_size=batch_size, queue=queue)
        else:
            with _comparison(sessions, spec, storage_url, settings, hashing=hashing) as incremental:
                enqueue_keys(
                    sessions,
                    send,
                    job_id=job_id,
                    keys=keys,
                    storage_url=storage_url,
                    batch_size=batch_size,
                    queue=queue,
                    incremental=incremental,
                )
    except Exception as exc:
        reason = str(exc) if isinstance(exc, ConfigError | InvalidKeyError) else f"{type(exc).__name__}: {exc}"
        with sessions() as session, session.begin():
            failed_now = fail(session, submitted.job_id, f"listing failed: {reason}")
        if failed_now:
            announce_end(send, submitted.job_id)
        raise
    complete_listing(sessions, send, submitted.job_id, passed_over)
    return submitted


@contextmanager
def _comparison(
    sessions: sessionmaker[Session], spec: JobSpec, storage_url: str, settings: Settings, *, hashing: bool
) -> Iterator[Incremental | None]:
    """How this job's listing is compared with what was tagged (None: it is not; everything listed is tagged).
    The active version is read once, when the listing starts."""
    if not spec.passes_over_unchanged:
        yield None
        return
    with sessions() as session:
        active = session.scalar(select(ModelVersion.id).where(ModelVersion.is_active.is_(True)))
    if not hashing:
        yield Incremental(active)
        return
    rehash = Rehash(open_storage(storage_url), threads=settings.fetch_threads, max_bytes=settings.max_image_bytes)
    try:
        yield Incremental(active, rehash)
    finally:
        rehash.close()


def check_source(spec: JobSpec, storage_url: str) -> None:
    """Refuse, before a job exists, a source that cannot be there: a missing folder, bucket or prefix."""
    from pathlib import Path

    if spec.key_file is not None and not Path(spec.key_file).is_file():
        raise ConfigError(f"key file not found: {spec.key_file}")
    open_storage(storage_url).check(spec.prefix or "")


def complete_listing(sessions: sessionmaker[Session], send: Send, job_id: str, passed_over: PassedOver) -> None:
    """Every item is in: record what the listing passed over, and close the job if nothing is left to tag."""
    with sessions() as session, session.begin():
        state = session.scalar(
            update(Job)
            .where(Job.id == job_id)
            .values(listing_complete=True, passed_over=dict(passed_over))
            .returning(Job.state)
        )
        closed = finish_if_complete(session, job_id)
    if _ended(state):  # it ended while its last page went in: what that page added is skipped too
        with sessions() as session, session.begin():
            skip_pending(session, job_id)
    if closed:  # every item was already done or failed (or there were none): the job ends here
        announce_end(send, job_id)


def send_batches(send: Send, job_id: str, ids: list[int], batch_size: int, queue: str) -> None:
    """`ids` as messages of `batch_size` sorted ids: pipelined where the sender can, else one by one."""
    send_tag_batches(send, job_id, [sorted(batch) for batch in chunked(ids, batch_size)], queue)
