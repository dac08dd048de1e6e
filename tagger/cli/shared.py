"""What every subcommand uses: the database, JSON output, and how a job is printed."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tagger.settings import Settings


def open_sessions(settings: Settings, *, migrate: bool = True) -> sessionmaker[Session]:
    from tagger.db import make_engine, make_sessionmaker, upgrade

    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    return make_sessionmaker(engine)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_job(job: Any, failed: list[tuple[str, str]]) -> None:
    rate = f"{job.rate:.1f} images/s" if job.rate else "-"
    eta = f", about {job.eta_seconds:.0f}s left" if job.eta_seconds else ""
    print(
        f"job {job.id}: {job.state.value}: {job.done} tagged, {job.failed} failed, "
        f"{job.skipped} skipped of {job.total} ({rate}{eta})" + (f"; {job.error}" if job.error else "")
    )
    for key, reason in failed[:50]:
        print(f"  failed {key}: {reason}")
    if len(failed) > 50:
        print(f"  ... and {len(failed) - 50} more (`tagger jobs show {job.id} --json`)")
