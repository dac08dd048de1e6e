"""The `tagger` command. Each subcommand imports what it needs, so `--help` stays fast."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from tagger.errors import ConfigError, TaggerError
from tagger.settings import Settings, describe, redacted

log = logging.getLogger("tagger")

EPILOG = """\
examples:
  tagger demo                               sample archive -> train -> bulk-tag -> report
  tagger tag ./stills --wait                tag a folder (starts its own Redis + workers)
  tagger tag s3://bucket/stills --wait      tag an S3 prefix (endpoint from AWS_ENDPOINT_URL)
  tagger worker                             serve TAGGER_BROKER_URL (one per machine/GPU)
  tagger train --labels labels.csv --images ./stills
  tagger results stills/0001.jpg            suggested tags for one image
  tagger export --format csv > tags.csv

Configuration comes from TAGGER_* environment variables: `tagger config` lists them.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tagger",
        description="Tag image archives with a multi-label CNN, through Celery workers, into SQL.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="generate a sample archive, train on it, bulk-tag it, report")
    p.add_argument("--images", type=int, default=2000, help="stills to generate (default 2000)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--size", type=int, default=64, help="model input size; small keeps the demo fast on CPU")
    p.add_argument("--workers", type=int, default=2, help="worker processes to start")
    p.add_argument("--dir", default=None, help="where to write the sample archive (default: VAR/demo)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("worker", help="run a Celery worker serving TAGGER_BROKER_URL")
    p.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="batches at once: pool processes, or task threads with TAGGER_WORKER_POOL=threads "
        "(default TAGGER_WORKER_CONCURRENCY, else 3 threads on a GPU / cores/2 processes on CPU)",
    )
    p.add_argument("--queues", default="tagger.interactive,tagger.bulk", help="comma-separated queues to consume")
    p.add_argument("--hostname", default=None, help="Celery node name (default: celery@HOST)")
    p.set_defaults(func=cmd_worker)

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

    p = sub.add_parser("train", help="train a model from `image_id,tags` CSV and register it")
    from training.options import get_args_parser

    get_args_parser(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("results", help="suggested tags of one image")
    p.add_argument("key")
    p.add_argument("--all-versions", action="store_true", help="include suggestions of older models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("export", help="export suggestions as CSV or JSON lines")
    p.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    p.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    p.add_argument("--tag", default=None, help="only this tag")
    p.add_argument("--min-probability", type=float, default=0.0)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("models", help="list, show, activate or roll back model versions")
    msub = p.add_subparsers(dest="models_command", required=True)
    m = msub.add_parser("list", help="all versions, newest first, metrics side by side")
    m.add_argument("--json", action="store_true")
    m = msub.add_parser("show", help="one version: metrics per tag, thresholds, training arguments and data")
    m.add_argument("version", nargs="?", help="default: the active version")
    m.add_argument("--json", action="store_true")
    m = msub.add_parser("activate", help="validate VERSION, make it active; running workers switch between batches")
    m.add_argument("version")
    m = msub.add_parser("rollback", help="re-activate the version that was active before the current one")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("labels", help="tags confirmed by people: the training data of `tagger train --labels db`")
    lsub = p.add_subparsers(dest="labels_command", required=True)
    m = lsub.add_parser("add", help="tags a person entered by hand for one image")
    m.add_argument("key")
    m.add_argument("tags", nargs="+")
    m = lsub.add_parser("accept", help="accept the active model's suggestions for one image (all, or the named tags)")
    m.add_argument("key")
    m.add_argument("tags", nargs="*")
    m = lsub.add_parser("import", help="load an `image_id,tags` CSV as manual labels")
    m.add_argument("csv")
    m.add_argument("--storage", default=None, help="where the images live (default TAGGER_STORAGE_URL)")
    m = lsub.add_parser("stats", help="how many images and labels per tag")
    p.set_defaults(func=cmd_labels)

    p = sub.add_parser("beat", help="run Celery beat: queues scheduled retraining (TAGGER_RETRAIN_SCHEDULE)")
    p.set_defaults(func=cmd_beat)

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

    p = sub.add_parser("db", help="database schema management")
    dsub = p.add_subparsers(dest="db_command", required=True)
    dsub.add_parser("upgrade", help="apply Alembic migrations up to the newest")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("config", help="show every TAGGER_* setting with its value and meaning")
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        return int(args.func(args, settings) or 0)
    except TaggerError as exc:
        print(f"tagger: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tagger: interrupted", file=sys.stderr)
        return 130


def _sessions(settings: Settings, *, migrate: bool = True) -> Any:
    from tagger.db import make_engine, make_sessionmaker, upgrade

    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    return make_sessionmaker(engine)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# --- worker -----------------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.broker_url:
        raise ConfigError(
            "tagger worker needs TAGGER_BROKER_URL (e.g. redis://localhost:6379/0); "
            "`tagger tag FOLDER --wait` without a broker starts its own workers"
        )
    from celery.signals import worker_process_init, worker_ready

    from tagger.db import make_engine, upgrade
    from tagger.device import pick_device
    from worker.app import configure
    from worker.context import init_process

    upgrade(make_engine(settings.database_url))
    gpu = pick_device(settings.device).type == "cuda"
    cores = os.cpu_count() or 1
    pool = settings.worker_pool if settings.worker_pool != "auto" else ("threads" if gpu else "prefork")
    default = 3 if pool == "threads" else max(1, cores // 2)
    concurrency = args.concurrency or settings.worker_concurrency or default
    if pool == "threads":
        # One process, one model, `concurrency` batches in flight: while one batch holds the
        # device, the others fetch, decode on the CPU or write to the database. CUDA is only
        # ever initialised in this process, after Celery has started.
        worker_ready.connect(lambda **_: init_process(settings, torch_threads=None), weak=False)
    else:
        # On CPU, prefork processes split the cores between them; a crash takes down one process.
        torch_threads = max(1, cores // concurrency)
        worker_process_init.connect(lambda **_: init_process(settings, torch_threads=torch_threads), weak=False)
    app = configure(settings, settings.broker_url)
    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--queues={args.queues}",
        f"--loglevel={settings.log_level}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    app.worker_main(argv=argv)
    return 0


# --- tag ----------------------------------------------------------------------------------------


def cmd_tag(args: argparse.Namespace, settings: Settings) -> int:
    from api_client.contract import QUEUE_BULK, QUEUE_INTERACTIVE
    from jobs.producer import broker_sender
    from jobs.progress import failures, wait
    from tagger import registry
    from tagger.local_workers import start_local_cluster

    query = "stale" if args.stale else args.query
    if bool(query) == bool(args.source):
        raise ConfigError("give a SOURCE (folder, s3://bucket/prefix, key file) or --stale / --query, not both")
    batch_size = args.batch_size or settings.batch_size
    queue = QUEUE_INTERACTIVE if args.priority == "interactive" else QUEUE_BULK
    sessions = _sessions(settings)
    with sessions() as session:
        registry.active(session)  # fail now, not in the workers, when there is no model
    submit_to = _submitter(args, settings, sessions, query, batch_size, queue)

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
        submitted = submit_to(broker_sender(settings, broker_url))
        print(f"job {submitted.job_id} {'queued' if submitted.created else 'already exists'}", file=sys.stderr)
        if not args.wait:
            if args.json:
                from jobs.progress import summary

                _print_json(summary(sessions, submitted.job_id).as_dict())
            else:
                print(submitted.job_id)
            return 0
        result = wait(sessions, submitted.job_id, show_progress=not args.json, alive=alive)
        failed = failures(sessions, submitted.job_id)
    if args.json:
        _print_json(result.as_dict() | {"failures": [{"key": k, "reason": r} for k, r in failed]})
    else:
        _print_job(result, failed)
    return 0 if result.state.value in ("done", "done_with_failures") else 1


def _submitter(
    args: argparse.Namespace, settings: Settings, sessions: Any, query: str | None, batch_size: int, queue: str
) -> Any:
    """A function send -> Submitted for the job this command describes (keys are read lazily)."""
    from pathlib import Path

    from jobs.producer import submit
    from jobs.queries import submit_query
    from jobs.sources import keys_from_file, keys_from_storage
    from tagger.storage import open_storage, storage_url_for

    common = {
        "batch_size": batch_size,
        "queue": queue,
        "idempotency_key": args.idempotency_key,
        "time_limit": args.time_limit,
    }
    if query:
        tags = [t.strip() for t in args.tags.split(",") if t.strip()]
        storage = storage_url_for(args.storage) if args.storage else None
        return lambda send: submit_query(
            sessions, send, query=query, tags=tags, storage_url=storage, default_storage=settings.storage_url, **common
        )
    source = args.source
    if Path(source).is_file():
        if not settings.storage_url:
            raise ConfigError("a key file names keys relative to TAGGER_STORAGE_URL; set it to file:///dir or s3://...")
        storage_url, keys = settings.storage_url, keys_from_file(Path(source))
    else:
        storage_url = storage_url_for(source)
        keys = keys_from_storage(open_storage(storage_url), images_only=not args.all_files)
    return lambda send: submit(sessions, send, source=source, storage_url=storage_url, keys=keys, **common)


def _print_job(job: Any, failed: list[tuple[str, str]]) -> None:
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


# --- train / demo --------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from training.train import main as train_main

    report = train_main(args, settings)
    if args.json:
        from dataclasses import asdict

        _print_json(asdict(report))
    else:
        print(
            f"model {report.version}: F2 {report.final['f2']:.4f}, accuracy {report.final['accuracy']:.4f} "
            f"on {report.valid_images} held-out images ({report.seconds:.0f}s)"
            + (" - now active" if report.activated else " - registered as candidate")
        )
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from tagger.demo import run_demo

    return run_demo(args, settings)


# --- results / export ----------------------------------------------------------------------------


def cmd_results(args: argparse.Namespace, settings: Settings) -> int:
    from tagger.queries import suggestions_for

    sessions = _sessions(settings)
    rows = suggestions_for(sessions, args.key, all_versions=args.all_versions)
    if args.json:
        _print_json({"key": args.key, "suggestions": rows})
        return 0
    if not rows:
        print(f"{args.key}: no suggestions (not tagged yet, or no tag above threshold)")
    for row in rows:
        print(f"{row['tag']:<24} {row['probability']:.3f}  ({row['model_version']})")
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from tagger.queries import export

    sessions = _sessions(settings)
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        n = export(sessions, out, fmt=args.format, tag=args.tag, min_probability=args.min_probability)
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {n} suggestions", file=sys.stderr)
    return 0


# --- models / jobs / db / config -----------------------------------------------------------------


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from tagger import promotion, registry

    sessions = _sessions(settings)
    if args.models_command == "activate":
        switch = promotion.activate(sessions, settings, args.version)
        print(
            f"activated {switch.active} (was {switch.previous or 'none'}); "
            f"{switch.listeners} worker process(es) notified, the others switch within seconds"
        )
        return 0
    if args.models_command == "rollback":
        switch = promotion.rollback(sessions, settings)
        print(f"rolled back from {switch.previous} to {switch.active}; {switch.listeners} worker process(es) notified")
        return 0
    if args.models_command == "show":
        with sessions() as session:
            row = registry.get(session, args.version) if args.version else registry.active(session)
            data = _model_row(row) | {"uri": row.uri, "sha256": row.sha256, "error": row.error, "meta": row.meta}
        if args.json:
            _print_json(data)
        else:
            _print_model(data)
        return 0
    with sessions() as session:
        rows = [_model_row(r) for r in registry.list_versions(session)]
    if args.json:
        _print_json(rows)
        return 0
    print(f"{'version':<24} {'arch':<10} {'status':<11} {'F2@0.2':>7} {'F2 cal':>7} {'mAP':>6} {'valid':>6}  created")
    for r in rows:
        cells = [f"{r[k]:.3f}" if isinstance(r[k], float) else "-" for k in ("f2", "f2_calibrated", "map")]
        print(
            f"{r['version']:<24} {r['arch']:<10} {r['status']:<11} {cells[0]:>7} {cells[1]:>7} {cells[2]:>6} "
            f"{r['valid_images'] or '-':>6}  {r['created_at']}"
        )
    return 0


def _model_row(r: Any) -> dict[str, Any]:
    metrics, training = (r.meta or {}).get("metrics") or {}, (r.meta or {}).get("training") or {}
    return {
        "version": r.version,
        "arch": r.arch,
        "status": r.status,
        "active": r.is_active,
        "f2": metrics.get("f2"),
        "f2_calibrated": metrics.get("f2_calibrated"),
        "map": metrics.get("map"),
        "valid_images": training.get("valid_images"),
        "tags": len(r.tags),
        "created_at": r.created_at.isoformat(timespec="seconds"),
        "activated_at": r.activated_at.isoformat(timespec="seconds") if r.activated_at else None,
    }


def _print_model(data: dict[str, Any]) -> None:
    meta = data["meta"] or {}
    metrics, training = meta.get("metrics") or {}, meta.get("training") or {}
    print(f"version   {data['version']} ({data['arch']}, {data['status']}{', active' if data['active'] else ''})")
    print(f"artifact  {data['uri']}  sha256 {data['sha256'][:16]}...")
    if data["error"]:
        print(f"refused   {data['error']}")
    for name in ("f2", "f2_calibrated", "map", "accuracy", "valid_loss"):
        if isinstance(metrics.get(name), float):
            print(f"{name:<14} {metrics[name]:.4f}")
    print(
        f"data      {training.get('rows')} rows, {training.get('train_images')} train / "
        f"{training.get('valid_images')} held out, sha256 {str(training.get('data_sha256'))[:16]}..."
    )
    print(
        f"training  init {training.get('init')}, {training.get('freeze_epochs')} frozen + {training.get('epochs')} "
        f"epochs (ran {training.get('epochs_run')}), lr {training.get('lr')}, batch {training.get('batch_size')}"
    )
    per_tag = metrics.get("per_tag") or {}
    if per_tag:
        print(f"  {'tag':<24} {'precision':>9} {'recall':>7} {'AP':>6} {'thresh':>6} {'support':>7}")
        for tag, m in per_tag.items():
            ap = f"{m['ap']:.3f}" if isinstance(m.get("ap"), float) else "-"
            print(
                f"  {tag:<24} {m['precision']:>9.3f} {m['recall']:>7.3f} {ap:>6} "
                f"{m.get('threshold', 0.2):>6.2f} {m['support']:>7}"
            )


def cmd_labels(args: argparse.Namespace, settings: Settings) -> int:
    from tagger import labels

    sessions = _sessions(settings)
    if args.labels_command == "add":
        n = labels.add(sessions, args.key, args.tags, source="manual", storage_url=settings.storage_url or None)
        print(f"{args.key}: {n} new label(s)")
    elif args.labels_command == "accept":
        accepted = labels.accept(sessions, args.key, args.tags or None)
        print(f"{args.key}: accepted {', '.join(accepted) or 'nothing (no matching suggestions)'}")
    elif args.labels_command == "import":
        from pathlib import Path

        from tagger.storage import storage_url_for

        storage = storage_url_for(args.storage) if args.storage else settings.storage_url or None
        images, n = labels.import_csv(sessions, Path(args.csv), storage_url=storage)
        print(f"imported {n} label(s) on {images} image(s) from {args.csv}")
    else:
        total, per_tag = labels.stats(sessions)
        print(f"{total} labelled image(s)")
        for tag, n in per_tag:
            print(f"  {tag:<24} {n:>7}")
    return 0


def cmd_beat(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.broker_url:
        raise ConfigError("tagger beat needs TAGGER_BROKER_URL: it queues retraining for a worker on tagger.training")
    from worker.app import configure
    from worker.retrain import beat_schedule

    app = configure(settings, settings.broker_url)
    app.conf.beat_schedule = beat_schedule(settings)
    print(
        f"beat: retraining on {settings.retrain_schedule!r} into queue tagger.training; "
        "run `tagger worker --queues tagger.training` to execute it",
        file=sys.stderr,
    )
    # The in-memory scheduler: celery's default PersistentScheduler keeps its state in a pickle-based shelve.
    app.start(["beat", "--scheduler", "celery.beat:Scheduler", f"--loglevel={settings.log_level}"])
    return 0


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.progress import failures, recent, summary, wait

    sessions = _sessions(settings)
    if args.jobs_command == "list":
        rows = [job.as_dict() for job in recent(sessions, args.limit)]
        if args.json:
            _print_json(rows)
            return 0
        for r in rows:
            print(f"{r['id']}  {r['state']:<20} {r['done']}/{r['total']} done, {r['failed']} failed  {r['source']}")
        return 0
    if args.jobs_command == "show":
        from jobs.progress import outcomes

        job, failed = summary(sessions, args.job_id), failures(sessions, args.job_id)
        items = outcomes(sessions, args.job_id, limit=args.items) if args.items else []
        if args.json:
            _print_json(job.as_dict() | {"failures": [{"key": k, "reason": r} for k, r in failed], "items": items})
        else:
            _print_job(job, failed)
            for item in items:
                print(
                    f"  {item['key']:<40} {item['state']:<8} attempts {item['attempts']}  "
                    f"{item['model_version'] or ''} {item['error'] or ''}"
                )
        return 0
    if args.jobs_command in ("cancel", "pause", "resume"):
        from jobs import control
        from jobs.producer import broker_sender

        send = broker_sender(settings) if settings.broker_url else None  # so that a cancelled job's webhook fires
        state = getattr(control, args.jobs_command)(sessions, args.job_id, send=send)
        print(f"job {args.job_id}: {state}")
        return 0
    if args.jobs_command == "reconcile":
        from jobs.control import reconcile
        from jobs.producer import broker_sender

        done = reconcile(sessions, broker_sender(settings), args.job_id)
        for jid, n in done.items():
            print(f"job {jid}: {n} pending image(s) queued again")
        if not done:
            print("no unfinished jobs")
        return 0
    if args.jobs_command == "retry":
        from jobs.control import retry_failed
        from jobs.producer import broker_sender

        n = retry_failed(sessions, broker_sender(settings), args.job_id)
        print(f"job {args.job_id}: {n} failed image(s) queued again")
        return 0
    job = wait(sessions, args.job_id, timeout=args.timeout)
    _print_job(job, failures(sessions, args.job_id))
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    _sessions(settings, migrate=True)
    print(f"database schema is up to date: {redacted('database_url', settings.database_url)}")
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    for var, default, help_text in describe():
        name = var.removeprefix("TAGGER_").lower()
        value = redacted(name, getattr(settings, name))
        print(f"{var:<28} = {value:<40} {help_text} [default: {default or 'see text'}]")
    return 0
