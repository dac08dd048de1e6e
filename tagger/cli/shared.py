"""What every subcommand uses: the database, JSON output, and how a job is printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.errors import ConfigError, NotFoundError, UnavailableError, first_line
from tagger.settings import Settings

if TYPE_CHECKING:  # every command imports this module: SQLAlchemy loads when a command opens the database
    from sqlalchemy.orm import Session, sessionmaker

_opened: list[Any] = []  # the engines this command opened: closed when it ends (`close_sessions`)


def open_sessions(settings: Settings, *, migrate: bool = True) -> sessionmaker[Session]:
    """Sessions on TAGGER_DATABASE_URL. Commands that write bring the schema up to date first; read-only
    ones (`migrate=False`) never create or change a database: one that is missing or out of date is an
    error that says what to run."""
    from sqlalchemy.exc import OperationalError

    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.db.migrate import current_revision, head_revision
    from tagger.settings import redacted

    url = settings.database_url
    shown = redacted("database_url", url)
    if not migrate and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise NotFoundError(
            f"no database at {shown}: nothing was tagged with these settings (TAGGER_DATABASE_URL, "
            "TAGGER_VAR_DIR; relative to the current folder). `tagger db upgrade` creates an empty one"
        )
    if migrate and url.startswith("sqlite:///"):
        from tagger.db.engine import sqlite_read_only

        why = sqlite_read_only(url.removeprefix("sqlite:///"))
        if why:
            raise ConfigError(
                f"the database at {shown} can only be read ({why}): the read commands (results, export, "
                "jobs list/show, models list/show, labels stats) work on it; this one writes"
            )
    engine = make_engine(url)
    _opened.append(engine)
    try:
        if migrate:
            upgrade(engine)
        else:
            current, head = current_revision(engine), head_revision()
            if current is None:
                raise NotFoundError(f"the database at {shown} has no tagger schema: run `tagger db upgrade`")
            if current != head:
                raise ConfigError(
                    f"the database at {shown} is at schema {current}, this tagger needs {head}: run `tagger db upgrade`"
                )
    except OperationalError as exc:
        raise UnavailableError(f"cannot reach the database at {shown}: {first_line(exc)}") from None
    return make_sessionmaker(engine)


def close_sessions() -> None:
    """Close the connections `open_sessions` opened: a command's end is theirs, also when `main` runs
    in-process (a test, an embedding program), not only at the process's exit."""
    while _opened:
        _opened.pop().dispose()


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_job(job: Any, failed: list[tuple[str, str]]) -> None:
    rate = f"{job.rate:.1f} images/s" if job.rate else "-"
    waiting = getattr(job, "waiting", None)
    eta = f", about {job.eta_seconds:.0f}s left" if job.eta_seconds and not waiting else ""
    unchanged = f", {job.unchanged} unchanged" if job.unchanged else ""
    print(
        f"job {job.id}: {job.state.value}: {job.done} tagged, {job.failed} failed, "
        f"{job.skipped} skipped of {job.total}{unchanged} ({rate}{eta})" + (f"; {job.error}" if job.error else "")
    )
    if waiting:
        print(f"  {waiting}")
    passed = getattr(job, "passed_over", None) or {}
    if passed:
        print("  passed over: " + ", ".join(f"{n} {why}" for why, n in sorted(passed.items(), key=lambda kv: -kv[1])))
    for key, reason in failed[:50]:
        print(f"  failed {key}: {reason}")
    if len(failed) > 50:
        print(f"  ... and {len(failed) - 50} more (`tagger jobs show {job.id} --json`)")
