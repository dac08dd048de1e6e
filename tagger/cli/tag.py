"""`tagger tag`: a job from a folder, an S3 prefix, a key file or a database query."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tagger.cli.shared import open_sessions, print_job, print_json
from tagger.errors import ConfigError
from tagger.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser("tag", help="create a tagging job from a folder, s3://bucket/prefix or key file")
    p.add_argument(
        "source",
        nargs="?",
        help="a folder, file:///dir, s3://bucket/prefix, or a text file of keys "
        "(one per line, relative to TAGGER_STORAGE_URL); omit with --stale or --query",
    )
    p.add_argument("--stale", action="store_true", help="re-tag images whose suggestions come from an older model")
    p.add_argument(
        "--query",
        choices=["untagged", "stale", "missing"],
        default=None,
        help="select images in the database: never tagged, tagged by an older model, or lacking --tags",
    )
    p.add_argument("--tags", default="", help="comma-separated tag set for --query missing")
    p.add_argument("--storage", default=None, help="storage URL of the queried images (default: where they were read)")
    p.add_argument("--wait", action="store_true", help="follow the job with a progress bar until it ends")
    p.add_argument("--batch-size", type=int, default=None, help="keys per task (default TAGGER_BATCH_SIZE)")
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes to start when no broker is configured (default 1)"
    )
    p.add_argument("--priority", choices=["bulk", "interactive"], default="bulk")
    p.add_argument("--idempotency-key", default=None, help="the same key twice returns the same job")
    p.add_argument("--time-limit", type=float, default=None, help="seconds; then the job fails, the rest skipped")
    p.add_argument("--all-files", action="store_true", help="list every file, not only image suffixes")
    p.add_argument("--json", action="store_true", help="print the job summary as JSON")
    p.set_defaults(func=cmd_tag)


def job_spec(args: argparse.Namespace, settings: Settings) -> Any:
    """The JobSpec this command line describes, checked against the contract before anything starts."""
    from tagger.storage import storage_url_for
    from tagger_client.contract import JobSpec, MessageError

    query = "stale" if args.stale else args.query
    if bool(query) == bool(args.source):
        raise ConfigError("give a SOURCE (folder, s3://bucket/prefix, key file) or --stale / --query, not both")
    common: dict[str, Any] = {
        "priority": args.priority,
        "batch_size": args.batch_size,
        "idempotency_key": args.idempotency_key,
        "time_limit": args.time_limit,
    }
    try:
        if query:
            tags = [t.strip() for t in args.tags.split(",") if t.strip()]
            storage = storage_url_for(args.storage) if args.storage else None
            return JobSpec.new(query=query, tags=tags, storage_url=storage, **common)
        if Path(args.source).is_file():
            if not settings.storage_url:
                raise ConfigError(
                    "a key file names keys relative to TAGGER_STORAGE_URL; set it to file:///dir or s3://..."
                )
            return JobSpec.new(key_file=args.source, storage_url=settings.storage_url, **common)
        include = ["*"] if args.all_files else None
        return JobSpec.new(prefix="", storage_url=storage_url_for(args.source), include=include, **common)
    except MessageError as exc:
        raise ConfigError(str(exc)) from None


def cmd_tag(args: argparse.Namespace, settings: Settings) -> int:
    from tagger import registry
    from tagger.cli.local_workers import start_local_cluster
    from tagger.jobs.producer import broker_sender, submit
    from tagger.jobs.progress import failures, summary, wait

    spec = job_spec(args, settings)
    sessions = open_sessions(settings)
    with sessions() as session:
        registry.active(session)  # fail now, not in the workers, when there is no model

    with ExitStack() as stack:
        broker_url, alive = settings.broker_url, None
        if not broker_url:
            workers = start_local_cluster(stack, settings, args.workers)
            broker_url, alive = workers.settings.broker_url, workers.alive
            print(
                f"no TAGGER_BROKER_URL: started embedded Redis at {broker_url} and {args.workers} local worker(s)",
                file=sys.stderr,
            )
            args.wait = True  # the local workers stop with this command, so it must wait
        submitted = submit(sessions, broker_sender(settings, broker_url), spec, settings)
        print(f"job {submitted.job_id} {'queued' if submitted.created else 'already exists'}", file=sys.stderr)
        if not args.wait:
            if args.json:
                print_json(summary(sessions, submitted.job_id).as_dict())
            else:
                print(submitted.job_id)
            return 0
        result = wait(sessions, submitted.job_id, show_progress=not args.json, alive=alive)
        failed = failures(sessions, submitted.job_id)
    if args.json:
        print_json(result.as_dict() | {"failures": [{"key": k, "reason": r} for k, r in failed]})
    else:
        print_job(result, failed)
    return 0 if result.state.value in ("done", "done_with_failures") else 1
