"""`tagger jobs`: follow and steer jobs."""

from __future__ import annotations

import argparse
from typing import Any

from tagger.cli.shared import open_sessions, print_job, print_json
from tagger.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser("jobs", help="list, show, wait for, cancel, pause, resume or retry jobs")
    jsub = p.add_subparsers(dest="jobs_command", required=True)
    j = jsub.add_parser("list", help="recent jobs")
    j.add_argument("--limit", type=int, default=20)
    j.add_argument("--json", action="store_true")
    j = jsub.add_parser("show", help="one job with its failures (and, with --items, every image's outcome)")
    j.add_argument("job_id")
    j.add_argument("--json", action="store_true")
    j.add_argument("--items", type=int, default=0, metavar="N", help="include up to N per-image outcomes")
    j = jsub.add_parser("wait", help="follow a job until it ends")
    j.add_argument("job_id")
    j.add_argument("--timeout", type=float, default=None)
    for name, text in (
        ("cancel", "skip the job's remaining batches (tagged images keep their tags)"),
        ("pause", "hold the job's batches in the queue until `resume`"),
        ("resume", "let a paused job's batches run again"),
        ("retry", "queue the job's failed images again (needs TAGGER_BROKER_URL)"),
    ):
        jsub.add_parser(name, help=text).add_argument("job_id")
    j = jsub.add_parser("reconcile", help="queue every pending image of unfinished jobs again (after broker data loss)")
    j.add_argument("job_id", nargs="?", help="default: every queued or running job")
    p.set_defaults(func=cmd_jobs)


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from tagger.jobs.progress import failures, recent, summary, wait

    sessions = open_sessions(settings)
    if args.jobs_command == "list":
        rows = [job.as_dict() for job in recent(sessions, args.limit)]
        if args.json:
            print_json(rows)
            return 0
        for r in rows:
            print(f"{r['id']}  {r['state']:<20} {r['done']}/{r['total']} done, {r['failed']} failed  {r['source']}")
        return 0
    if args.jobs_command == "show":
        from tagger.jobs.progress import outcomes

        job, failed = summary(sessions, args.job_id), failures(sessions, args.job_id)
        items = outcomes(sessions, args.job_id, limit=args.items) if args.items else []
        if args.json:
            print_json(job.as_dict() | {"failures": [{"key": k, "reason": r} for k, r in failed], "items": items})
        else:
            print_job(job, failed)
            for item in items:
                print(
                    f"  {item['key']:<40} {item['state']:<8} attempts {item['attempts']}  "
                    f"{item['model_version'] or ''} {item['error'] or ''}"
                )
        return 0
    if args.jobs_command in ("cancel", "pause", "resume"):
        from tagger.jobs import control
        from tagger.jobs.producer import broker_sender

        send = broker_sender(settings) if settings.broker_url else None  # so that a cancelled job's webhook fires
        state = getattr(control, args.jobs_command)(sessions, args.job_id, send=send)
        print(f"job {args.job_id}: {state}")
        return 0
    if args.jobs_command == "reconcile":
        from tagger.jobs.control import reconcile
        from tagger.jobs.producer import broker_sender

        done = reconcile(sessions, broker_sender(settings), args.job_id)
        for jid, n in done.items():
            print(f"job {jid}: {n} pending image(s) queued again")
        if not done:
            print("no unfinished jobs")
        return 0
    if args.jobs_command == "retry":
        from tagger.jobs.control import retry_failed
        from tagger.jobs.producer import broker_sender

        n = retry_failed(sessions, broker_sender(settings), args.job_id)
        print(f"job {args.job_id}: {n} failed image(s) queued again")
        return 0
    job = wait(sessions, args.job_id, timeout=args.timeout)
    print_job(job, failures(sessions, args.job_id))
    return 0
