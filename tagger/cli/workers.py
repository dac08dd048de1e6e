"""`tagger workers`: every live worker with what it serves, the queues' depths and the unfinished jobs."""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from tagger.argtypes import positive_float
from tagger.cli.shared import open_sessions, print_json
from tagger.errors import ConfigError
from tagger.settings import Settings

UNFINISHED = ("queued", "running", "paused")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "workers",
        help="live workers (host, pid, pool, device, queues, model served, last batch, rate), queues and jobs",
        description="Asks every worker on TAGGER_BROKER_URL over Celery's broadcast channel (as `celery inspect` "
        "does) and lists those that answer within --timeout: a stopped or killed worker is not listed. It stops "
        "waiting as soon as every worker in the broker's list of running workers has answered (each keeps its "
        "entry fresh every few seconds), so it waits the whole --timeout only when one of them does not answer "
        "(killed in the last 15 seconds) or none is listed. Also shows the messages waiting in each queue and "
        "the jobs not yet finished.",
    )
    p.add_argument("--timeout", type=positive_float, default=2.0, help="most seconds to wait for answers (default 2)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_workers)


def fleet(settings: Settings, timeout: float) -> dict[str, Any]:
    """What `tagger workers` shows, as data: workers (sorted by name), queues, unacked, unfinished jobs."""
    from sqlalchemy import select

    from tagger.broker.queues import broker_depths
    from tagger.db.schema import Job
    from tagger.jobs.progress import summary

    workers = _answers(settings, timeout)
    depths = broker_depths(settings.broker_url)
    sessions = open_sessions(settings)
    with sessions() as session:
        ids = list(session.scalars(select(Job.id).where(Job.state.in_(UNFINISHED)).order_by(Job.created_at)))
    return {
        "workers": workers,
        "queues": depths.waiting,
        "unacked": depths.unacked,
        "jobs": [summary(sessions, job_id).as_dict() for job_id in ids],
    }


def _answers(settings: Settings, timeout: float) -> list[dict[str, Any]]:
    """The live workers on the broker, as each answers the status broadcast, sorted by name. The wait ends when
    as many have answered as the broker lists as running (tagger.broker.presence), else after `timeout`."""
    from tagger.broker.config import make_producer_app
    from tagger.broker.presence import present
    from tagger.worker.health import STATUS_COMMAND

    try:
        expected = len(present(settings.broker_url))
    except Exception as exc:  # the list only shortens the wait: without it the broadcast waits its whole window
        logging.getLogger(__name__).info("the broker's list of workers could not be read: %s", exc)
        expected = 0
    app = make_producer_app(settings, settings.broker_url)
    replies = app.control.broadcast(STATUS_COMMAND, reply=True, timeout=timeout, limit=expected or None) or []
    return sorted(
        (
            {**info, "hostname": name}
            for reply in replies
            for name, info in reply.items()
            if isinstance(info, dict) and "error" not in info  # a worker without the command (older) says so
        ),
        key=lambda w: w["hostname"],
    )


def live_workers(settings: Settings, timeout: float = 2.0) -> int | None:
    """How many workers answer on TAGGER_BROKER_URL; None when that cannot be asked (no broker URL, or the
    broker does not answer)."""
    if not settings.broker_url:
        return None
    try:
        return len(_answers(settings, timeout))
    except Exception:  # the broker's own errors, whatever transport raised them: unknown, not zero
        return None


def cmd_workers(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.broker_url:
        raise ConfigError("tagger workers needs TAGGER_BROKER_URL: it asks the workers serving that broker")
    data = fleet(settings, args.timeout)
    if args.json:
        print_json(data)
        return 0
    now = time.time()
    print(f"{len(data['workers'])} worker(s) answered within {args.timeout:g}s")
    for w in data["workers"]:
        served = ", ".join(f"{v} ({n} proc)" for v, n in sorted(w["models_served"].items())) or "no model loaded"
        last = f"{now - w['last_batch_at']:.0f}s ago" if w.get("last_batch_at") else "never"
        print(
            f"  {w['hostname']}  host {w['host']} pid {w['pid']}  {w['pool']} x{w['concurrency']} on {w['device']}  "
            f"queues {','.join(w['queues'])}  model {served}  last batch {last}  "
            f"{w['images_per_second']:.1f} images/s (last minute)  {w['batches_in_flight']} batch(es) in flight"
        )
    queues = ", ".join(f"{q} {n}" for q, n in data["queues"].items())
    print(f"queues (messages waiting): {queues}; {data['unacked']} delivered, not yet acknowledged")
    print(f"{len(data['jobs'])} unfinished job(s)")
    for job in data["jobs"]:
        rate = f", {job['images_per_second']:.1f} images/s" if job.get("images_per_second") else ""
        print(f"  {job['id']}  {job['state']}  {job['done'] + job['failed'] + job['skipped']}/{job['total']}{rate}")
    return 0
