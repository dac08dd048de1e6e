"""Why a job waits: a worker that meets an infrastructure error for a job says so on the job, best effort.

The note goes to the job's row in a short transaction of its own; when the database is the very thing
that fails, to the broker under a key per job (tagger.broker.waiting). The sink clears the row's note in
the write that moves items; readers ignore a broker note older than the job's last progress.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import func, update

from tagger.db.schema import Job, utcnow
from tagger.errors import first_line
from tagger.worker.context import WorkerContext
from tagger_client.contract import JobState

log = logging.getLogger(__name__)

_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def mask(text: str) -> str:
    """`text` with any password in a URL masked: postgresql://user:***@host."""
    return _PASSWORD_IN_URL.sub(r"\1***@", text)


def reason(exc: BaseException, *, out_of_connections: bool) -> str:
    """What the job waits for, in words, with the error's class and first line."""
    import psycopg
    from sqlalchemy.exc import DBAPIError

    if disk_full(exc):
        what = "the disk under the database is full"
    elif isinstance(exc, DBAPIError | psycopg.Error):
        text = first_line(exc).lower()
        if out_of_connections:
            # A fleet short of connections slows down, it does not stop: say so, and where the budget is.
            what = "the database has no connection to spare (workers take turns; `tagger config` shows the budget)"
        elif "connect" in text or "refused" in text:
            what = "the database refuses connections"
        else:
            what = "the database fails"
    else:
        what = "the broker cannot be reached"
    return mask(f"{what}: {type(exc).__name__}: {first_line(exc)}")[:2000]


def disk_full(exc: BaseException) -> bool:
    """The database could not grow a file for want of space: SQLite's SQLITE_FULL ("database or disk is
    full"), PostgreSQL's disk_full (SQLSTATE 53100, "could not extend file ...: No space left on device").
    Waited out like an outage: the images are not at fault, and freeing space lets the job go on."""
    import sqlite3

    cause = getattr(exc, "orig", None) or exc  # sqlalchemy's DBAPIError wraps the driver's error
    if isinstance(cause, sqlite3.Error):
        return getattr(cause, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return getattr(cause, "sqlstate", None) == "53100"


def note_waiting(ctx: WorkerContext, job_id: str, why: str) -> None:
    """Record `why` on the job (its row, else the broker), keeping the first note's time. Never raises."""
    try:
        with ctx.sessions() as session, session.begin():
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
                .values(waiting_reason=why, waiting_since=func.coalesce(Job.waiting_since, utcnow()))
                .execution_options(synchronize_session=False)
            )
        return
    except Exception as exc:
        log.info("job %s: the database took no note of the wait (%s); the broker keeps it", job_id, first_line(exc))
    broker_url = ctx.settings.broker_url
    if not broker_url:
        return
    try:
        from tagger.broker.waiting import note

        note(broker_url, job_id, why)
    except Exception as exc:
        log.info("job %s: the broker took no note of the wait either: %s", job_id, first_line(exc))
