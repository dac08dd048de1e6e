"""`tagger jobs`: follow and steer jobs, with or without a configured broker."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from tagger.argtypes import positive_int
from tagger.cli.shared import open_sessions, print_job, print_json
from tagger.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser(
        "jobs",
        help="list, show, wait for, cancel, pause, resume or retry jobs",
        description="Job ids can be shortened to a unique prefix of at least 4 characters. Without "
        "TAGGER_BROKER_URL, resume, retry and reconcile start their own embedded Redis and workers, and "
        "wait for the job, as `tagger tag` does.",
    )
    jsub = p.add_subparsers(dest="jobs_command", required=True)
    j = jsub.add_parser("list", help="recent jobs, newest first")
    j.add_argument("--limit", type=positive_int, default=20, help="how many (default 20)")
    j.add_argument("--json", action="store_true", help="print JSON")
    j = jsub.add_parser("show", help="one job with its failures (and, with --items, every image's outcome)")
    j.add_argument("job_id")
    j.add_argument("--json", action="store_true", help="print JSON")
    j.add_argument("--items", type=int, default=0, metavar="N", help="include up to N per-image outcomes")
    j = jsub.add_parser("wait", help="follow a job until it ends")
    j.add_argument("job_id")
    j.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    for name, text in (
        ("cancel", "skip the job's remaining batches (tagged images keep their tags)"),
        ("pause", "hold the job's batches in the queue until `resume`"),
        ("resume", "let a paused or interrupted job run again"),
        ("retry", "queue the job's failed images again"),
    ):
        j = jsub.add_parser(name, help=text)
        j.add_argument("job_id")
        if name in ("resume", "retry"):
            j.add_argument("--workers", type=positive_int, default=1, help="local workers without a broker (default 1)")
    j = jsub.add_parser("reconcile", help="queue every pending image of unfinished jobs again (after broker data loss)")
    j.add_argument("job_id", nargs="?", help="default: every queued or running job")
    j.add_argument("--workers", type=positive_int, default=1, help="local workers without a broker (default 1)")
    p.set_defaults(func=cmd_jobs)


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from tagger.jobs.progress import failures, recent, resolve, with_broker_notes

    command = args.jobs_command
    sessions = open_sessions(settings, migrate=command not in ("list", "show", "wait"))
    if command == "list":
        jobs = with_broker_notes(recent(sessions, args.limit), settings.broker_url)
        if args.json:
            print_json([job.as_dict() for job in jobs])
            return 0
        for job in jobs:
            waiting = f"; {job.waiting_short}" if job.waiting_short else ""
            unchanged = f", {job.unchanged} unchanged" if job.unchanged else ""
            counts = f"{job.done}/{job.total} done, {job.failed} failed{unchanged}"
            print(f"{job.id}  {job.state.value:<20} {counts}  {job.source}{waiting}")
        return 0
    job_id = resolve(sessions, args.job_id) if getattr(args, "job_id", None) else None
    if command == "show":
        from tagger.jobs.progress import delivery, outcomes, summary, with_broker_note

        assert job_id is not None
        job, failed = with_broker_note(summary(sessions, job_id), settings.broker_url), failures(sessions, job_id)
        items = outcomes(sessions, job_id, limit=args.items) if args.items else []
        if args.json:
            failures_out = [{"key": k, "reason": r} for k, r in failed]
            print_json(
                job.as_dict() | {"failures": failures_out, "items": items, "webhook": delivery(sessions, job_id)}
            )
            return 0
        print_job(job, failed)
        webhook = delivery(sessions, job_id)
        if webhook:
            error = f": {webhook['last_error']}" if webhook.get("last_error") else ""
            print(f"  webhook: {webhook['state']} after {webhook['attempts']} attempt(s){error}")
        for item in items:
            print(
                f"  {item['key']:<40} {item['state']:<8} attempts {item['attempts']}  "
                f"{item['model_version'] or ''} {item['error'] or ''}"
            )
        return 0
    if command == "wait":
        assert job_id is not None
        return follow(sessions, job_id, settings, timeout=args.timeout)
    if command in ("cancel", "pause"):
        from tagger.broker.send import broker_sender
        from tagger.jobs import control

        send = broker_sender(settings) if settings.broker_url else None  # so that a cancelled job's webhook fires
        print(f"job {job_id}: {getattr(control, command)(sessions, job_id, send=send)}")
        return 0
    return _requeue(args, settings, sessions, job_id)


def _requeue(args: argparse.Namespace, settings: Settings, sessions: Any, job_id: str | None) -> int:
    """resume, retry and reconcile: put work back on a queue; with no broker, run it here and wait."""
    from tagger.jobs import control
    from tagger.jobs.progress import summary
    from tagger.worker.local import dispatch

    with dispatch(settings, workers=args.workers) as where:
        if args.jobs_command == "resume":
            assert job_id is not None
            state = summary(sessions, job_id).state
            if state.value == "paused" or not where.local:
                print(f"job {job_id}: {control.resume(sessions, job_id, send=where.send)}")
            if where.local and not summary(sessions, job_id).state.finished:
                # An interrupted local job's batches died with its embedded broker: queue its pending images.
                n = control.reconcile(sessions, where.send, job_id).get(job_id, 0)
                print(f"job {job_id}: {n} pending image(s) queued", file=sys.stderr)
            jobs = [job_id]
        elif args.jobs_command == "retry":
            assert job_id is not None
            n = control.retry_failed(sessions, where.send, job_id)
            print(f"job {job_id}: {n} failed image(s) queued again")
            jobs = [job_id] if n else []
        else:
            requeued = control.reconcile(sessions, where.send, job_id)
            for jid, n in requeued.items():
                print(f"job {jid}: {n} pending image(s) queued again")
            if not requeued:
                print("no unfinished jobs")
            jobs = list(requeued)
        if not where.local:
            return 0
        with where.explaining():
            followed = settings.replace(broker_url=where.broker_url)  # the embedded one too: its notes
            return max([follow(sessions, jid, followed, alive=where.alive) for jid in jobs], default=0)


def follow(
    sessions: Any,
    job_id: str,
    settings: Settings,
    *,
    timeout: float | None = None,
    alive: Callable[[], bool] | None = None,
) -> int:
    """Wait for the job and print its summary; exit code 0 if it ended done (with or without failures).
    While it waits, the progress lines say why (a worker's note, on the job's row or in the broker)."""
    from tagger.cli.workers import live_workers
    from tagger.jobs.progress import failures, wait

    job = wait(
        sessions,
        job_id,
        timeout=timeout,
        alive=alive,
        say=lambda line: print(line, file=sys.stderr, flush=True),
        broker_url=settings.broker_url or None,
        # workers started here are running while `alive` says so; elsewhere, the broker's registry knows
        live_workers=(lambda: int(alive())) if alive is not None else lambda: live_workers(settings),
    )
    print_job(job, failures(sessions, job_id))
    return 0 if job.state.value in ("done", "done_with_failures") else 1
