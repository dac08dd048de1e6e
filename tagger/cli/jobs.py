"""`tagger jobs`: follow and steer jobs, with or without a configured broker."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from tagger.argtypes import age, int_between, positive_int
from tagger.cli.shared import open_sessions, print_job, print_json
from tagger.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser(
        "jobs",
        help="list, show, wait for, cancel, pause, resume, retry or prune jobs",
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
    j.add_argument(
        "--items", type=int_between(0), default=0, metavar="N", help="include up to N per-image outcomes, by image id"
    )
    j.add_argument(
        "--after",
        type=int_between(0),
        default=0,
        metavar="IMAGE_ID",
        help="the outcomes after this image id (the last one shown): the next page of --items",
    )
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
    j = jsub.add_parser(
        "prune",
        help="delete the per-image rows of done and skipped images of old finished jobs (counts and failures stay)",
        description="Finished jobs (done, failed, cancelled, expired) that ended longer ago than the retention keep "
        "their row, their counts and their failed images with the reasons; the per-image rows of their done and "
        "skipped images are deleted, a few thousand per transaction, so workers keep running meanwhile. "
        "`tagger results` shows the same afterwards. Run it from cron; see docs/operate.md.",
    )
    j.add_argument(
        "--older-than",
        type=age,
        default=None,
        metavar="AGE",
        help="jobs that finished longer ago than this: 30d, 12h, 90m or a number of days "
        "(default TAGGER_JOB_RETENTION_DAYS)",
    )
    j.add_argument("--dry-run", action="store_true", help="say what would be deleted and kept; delete nothing")
    j.add_argument(
        "--batch", type=int_between(1, 100_000), default=5000, help="rows deleted per transaction (default 5000)"
    )
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
        from tagger.jobs.progress import delivery, items_pruned_at, outcomes, summary, with_broker_note

        assert job_id is not None
        job, failed = with_broker_note(summary(sessions, job_id), settings.broker_url), failures(sessions, job_id)
        items = outcomes(sessions, job_id, limit=args.items, after=args.after) if args.items else []
        following = items[-1]["image_id"] if items and len(items) == args.items else None
        pruned = items_pruned_at(sessions, job_id)
        if args.json:
            failures_out = [{"key": k, "reason": r} for k, r in failed]
            print_json(
                job.as_dict()
                | {
                    "failures": failures_out,
                    "items": items,
                    "items_after": following,
                    "items_pruned_at": pruned,
                    "webhook": delivery(sessions, job_id),
                }
            )
            return 0
        print_job(job, failed)
        if pruned is not None:
            print(f"  done and skipped images' rows pruned on {pruned:%Y-%m-%d}; counts and failures kept")
        webhook = delivery(sessions, job_id)
        if webhook:
            error = f": {webhook['last_error']}" if webhook.get("last_error") else ""
            print(f"  webhook: {webhook['state']} after {webhook['attempts']} attempt(s){error}")
        for item in items:
            print(
                f"  {item['key']:<40} {item['state']:<8} attempts {item['attempts']}  "
                f"{item['model_version'] or ''} {item['error'] or ''}"
            )
        if following is not None:
            print(f"  more: tagger jobs show {job_id[:8]} --items {args.items} --after {following}")
        return 0
    if command == "wait":
        assert job_id is not None
        return follow(sessions, job_id, settings, timeout=args.timeout)
    if command == "prune":
        return _prune(args, settings, sessions)
    if command in ("cancel", "pause"):
        from tagger.broker.send import broker_sender
        from tagger.jobs import control

        send = broker_sender(settings) if settings.broker_url else None  # so that a cancelled job's webhook fires
        print(f"job {job_id}: {getattr(control, command)(sessions, job_id, send=send)}")
        return 0
    return _requeue(args, settings, sessions, job_id)


def _prune(args: argparse.Namespace, settings: Settings, sessions: Any) -> int:
    """`jobs prune`: what goes (with --dry-run, only said), a progress bar on a terminal, one line at the end."""
    from tqdm import tqdm

    from tagger.jobs.retention import held, prunable, prune_job

    older_than = args.older_than if args.older_than is not None else timedelta(days=settings.job_retention_days)
    jobs = prunable(sessions, older_than)
    if args.dry_run:
        rows = failed = 0
        for job in jobs:
            counts = held(sessions, job.id)
            done, skipped, kept = counts.get("done", 0), counts.get("skipped", 0), counts.get("failed", 0)
            rows, failed = rows + done + skipped, failed + kept
            print(
                f"job {job.id[:8]}  {job.state:<18} finished {job.finished_at:%Y-%m-%d %H:%M}: would delete "
                f"{done + skipped:,} rows ({done:,} done, {skipped:,} skipped), keep {kept:,} failed"
            )
        print(
            f"would prune {len(jobs)} job(s) that finished more than {_days(older_than)} ago: {rows:,} rows of done "
            f"and skipped images; their rows, counts and {failed:,} failures stay"
        )
        return 0
    deleted = 0
    with tqdm(total=sum(j.done + j.skipped for j in jobs), unit="row", desc="jobs prune", disable=None) as bar:
        for job in jobs:
            deleted += prune_job(sessions, job.id, batch=args.batch, progress=bar.update)
    print(
        f"pruned {len(jobs)} job(s) that finished more than {_days(older_than)} ago: {deleted:,} rows of done and "
        "skipped images deleted; counts and failures kept"
    )
    return 0


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:g} day(s)" if days >= 1 else f"{span.total_seconds() / 3600:g} hour(s)"


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
