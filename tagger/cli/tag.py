"""`tagger tag`: a job from a folder, an S3 prefix, a key file or a database query."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tagger.argtypes import positive_float, positive_int
from tagger.cli.shared import open_sessions, print_json
from tagger.errors import ConfigError
from tagger.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser(
        "tag",
        help="create a tagging job from a folder, s3://bucket/prefix, key file or database query",
        description="Create a tagging job. Without TAGGER_BROKER_URL it starts an embedded Redis and local "
        "workers and waits for the job; Ctrl-C or SIGTERM then pauses the job and stops them (`tagger jobs "
        "resume JOB` continues it). With a broker it only queues the job (add --wait to follow it). A listing "
        "skips hidden files and NAS clutter (@eaDir, #recycle, __MACOSX, ...) and files without an image "
        "suffix, and reports how many it passed over, by reason. A folder or prefix is tagged incrementally: "
        "only images that are new, changed since they were tagged (size and modification time, or S3 ETag), "
        "tagged by another model version, or failed last time; --all tags every one. A key file is tagged "
        "as listed.",
    )
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
    p.add_argument("--tags", default=None, help="comma-separated tag set for --query missing")
    p.add_argument("--storage", default=None, help="with --query: only images under this storage (default: all)")
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="list only files matching (repeatable; `*` = all files)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="also pass over files or folders matching (repeatable)",
    )
    p.add_argument(
        "--all-files", action="store_true", help="list every file, not only image suffixes (= --include '*')"
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="tag every listed image, also those unchanged since the active model tagged them (default: only "
        "what is new, changed, stale or failed)",
    )
    p.add_argument(
        "--hash",
        action="store_true",
        default=None,
        help="record each image's SHA-256 as it is tagged, and compare by it: a re-run reads what the listing "
        "calls unchanged and re-tags what hashes otherwise (default: TAGGER_CONTENT_HASH)",
    )
    p.add_argument("--wait", action="store_true", help="follow the job until it ends (always, without a broker)")
    p.add_argument("--batch-size", type=int, default=None, help="images per task, 1-1024 (default TAGGER_BATCH_SIZE)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="worker processes to start when no broker is configured (default 1)",
    )
    p.add_argument("--priority", choices=["bulk", "interactive"], default="bulk", help="queue (default bulk)")
    p.add_argument("--idempotency-key", default=None, help="the same key twice is the same job (resumed if unfinished)")
    p.add_argument(
        "--time-limit", type=positive_float, default=None, help="seconds; then the job fails, the rest skipped"
    )
    p.add_argument("--json", action="store_true", help="print the job summary as JSON")
    p.set_defaults(func=cmd_tag)


def job_spec(args: argparse.Namespace, settings: Settings) -> Any:
    """The JobSpec this command line describes, checked against the contract before anything starts."""
    from tagger.storage import storage_url_for
    from tagger_client.contract import JobSpec, MessageError

    query = "stale" if args.stale else args.query
    if query and args.source:
        raise ConfigError("give a SOURCE (folder, s3://bucket/prefix, key file) or --stale / --query, not both")
    if not query and not args.source:
        raise ConfigError("what to tag? give a SOURCE (folder, s3://bucket/prefix, key file) or --stale / --query")
    if args.tags is not None and query != "missing":
        raise ConfigError("--tags goes with --query missing")
    if args.storage and not query:
        raise ConfigError("--storage goes with --query or --stale (a SOURCE names its own storage)")
    if args.all and query:
        raise ConfigError("--all goes with a SOURCE (a folder or prefix): a query selects its own images")
    common: dict[str, Any] = {
        "priority": args.priority,
        "batch_size": args.batch_size,
        "idempotency_key": args.idempotency_key,
        "time_limit": args.time_limit,
        "content_hash": args.hash,
    }
    try:
        if query:
            tags = [t.strip() for t in (args.tags or "").split(",") if t.strip()]
            storage = storage_url_for(args.storage) if args.storage else None
            return JobSpec.new(query=query, tags=tags, storage_url=storage, **common)
        if Path(args.source).is_file():
            if not settings.storage_url:
                raise ConfigError(
                    "a key file names keys relative to TAGGER_STORAGE_URL; set it to file:///dir or s3://..."
                )
            return JobSpec.new(key_file=args.source, storage_url=settings.storage_url, **common)
        include = ["*"] if args.all_files else args.include
        return JobSpec.new(
            prefix="",
            storage_url=storage_url_for(args.source),
            include=include,
            exclude=args.exclude,
            incremental=False if args.all else None,
            **common,
        )
    except MessageError as exc:
        raise ConfigError(str(exc)) from None


def cmd_tag(args: argparse.Namespace, settings: Settings) -> int:
    from tagger import registry
    from tagger.cli.jobs import follow
    from tagger.jobs.control import pause, reconcile, resume
    from tagger.jobs.producer import submit
    from tagger.jobs.progress import summary
    from tagger.worker.local import dispatch

    spec = job_spec(args, settings)
    if spec.query is None:  # a folder, bucket or prefix that is not there: say so before anything starts
        from tagger.jobs.producer import check_source
        from tagger.storage import canonical_url

        check_source(spec, canonical_url(spec.storage_url or settings.storage_url))
    sessions = open_sessions(settings)
    with sessions() as session:
        registry.active(session)  # fail now, not in the workers, when there is no model
    if spec.query is not None:  # an unknown tag or storage: said before a broker or worker starts
        from tagger.jobs.queries import query_ids
        from tagger.storage import canonical_url

        query_ids(sessions, spec, storage_url=canonical_url(spec.storage_url) if spec.storage_url else "")
    job_id = None
    try:
        with dispatch(settings, workers=args.workers) as where, where.explaining():
            submitted = submit(sessions, where.send, spec, settings)
            job_id = submitted.job_id
            job = summary(sessions, job_id)
            if submitted.created:
                print(f"job {job_id} queued", file=sys.stderr)
            else:
                print(f"job {job_id} already exists ({job.state.value})", file=sys.stderr)
                if where.local and not job.state.finished:  # interrupted here before: its batches died with
                    if job.state.value == "paused":  # the embedded broker, so run it again, here
                        resume(sessions, job_id, send=where.send)
                    reconcile(sessions, where.send, job_id)
            if job.passed_over:
                print(f"passed over: {_reasons(job.passed_over)}", file=sys.stderr)
            if job.unchanged:
                print(f"{job.unchanged} unchanged since tagged by the active model (--all tags them)", file=sys.stderr)
            if not (args.wait or where.local):
                print_json(summary(sessions, job_id).as_dict()) if args.json else print(job_id)
                return 0
            if args.json:
                from tagger.jobs.progress import failures, wait

                result = wait(sessions, job_id, show_progress=False, alive=where.alive)
                failed = [{"key": k, "reason": r} for k, r in failures(sessions, job_id)]
                print_json(result.as_dict() | {"failures": failed})
                return 0 if result.state.value in ("done", "done_with_failures") else 1
            return follow(sessions, job_id, settings.replace(broker_url=where.broker_url), alive=where.alive)
    except KeyboardInterrupt:
        if job_id is not None and not settings.broker_url:
            state = summary(sessions, job_id).state
            if state.finished:  # the interrupt came after the job's end: nothing to pause
                print(f"\ninterrupted: job {job_id} had already ended ({state.value})", file=sys.stderr)
                raise
            if state.value != "paused":
                pause(sessions, job_id)
            print(
                f"\ninterrupted: job {job_id} is paused; `tagger jobs resume {job_id[:8]}` continues it",
                file=sys.stderr,
            )
        elif job_id is not None:
            print(f"\nstopped following job {job_id}; it goes on: `tagger jobs wait {job_id[:8]}`", file=sys.stderr)
        raise


def _reasons(passed_over: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(passed_over.items(), key=lambda kv: -kv[1]))
