"""`tagger db` and `tagger config`: the schema and the settings."""

from __future__ import annotations

import argparse
import os
from typing import Any

from tagger.settings import Settings, describe, redacted


def register(sub: Any) -> None:
    p = sub.add_parser("db", help="database schema: create or upgrade it, or show where it stands")
    dsub = p.add_subparsers(dest="db_command", required=True)
    dsub.add_parser("upgrade", help="create the schema, or apply Alembic migrations up to the newest")
    dsub.add_parser("status", help="the schema revision of the database and the one this tagger needs")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("config", help="show every TAGGER_* setting with its value and meaning (secrets masked)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("storage", help="storage roots: create the buckets or folders a deployment needs")
    ssub = p.add_subparsers(dest="storage_command", required=True)
    init = ssub.add_parser(
        "init",
        help="create each URL's bucket or folder if missing (default: TAGGER_STORAGE_URL and TAGGER_MODEL_STORE)",
    )
    init.add_argument("urls", nargs="*", metavar="URL", help="file:///dir or s3://bucket[/prefix]")
    p.set_defaults(func=cmd_storage)


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.exc import OperationalError

    from tagger.db import make_engine, upgrade
    from tagger.db.migrate import current_revision, head_revision
    from tagger.errors import UnavailableError

    shown = redacted("database_url", settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        before = current_revision(engine)
        if args.db_command == "upgrade":
            upgrade(engine)
    except OperationalError as exc:
        from tagger.errors import first_line

        raise UnavailableError(f"cannot reach the database at {shown}: {first_line(exc)}") from None
    finally:
        engine.dispose()
    head = head_revision()
    if args.db_command == "status":
        state = "up to date" if before == head else f"needs `tagger db upgrade` to {head}"
        print(f"{shown}: schema {before or 'none (not created yet)'}, {state}")
        return 0 if before == head else 1
    if before is None:
        print(f"created the schema ({head}) in {shown}")
    elif before != head:
        print(f"upgraded {shown} from {before} to {head}")
    else:
        print(f"{shown} is already up to date ({head})")
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    for var, default, help_text in describe():
        name = var.removeprefix("TAGGER_").lower()
        value = redacted(name, getattr(settings, name))
        print(f"{var:<28} = {value:<40} {help_text}" + (f" [default: {default}]" if default else ""))
    for var in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        value = os.environ.get(var) or ""
        shown = ("********" if "SECRET" in var else value) if value else "(not set)"
        print(f"{var:<28} = {shown:<40} read by boto3 for s3:// storage and model stores")
    print()
    for line in connection_budget(settings):
        print(line)
    return 0


def connection_budget(settings: Settings) -> list[str]:
    """What each part of a deployment with these settings may hold of PostgreSQL's max_connections."""
    from tagger.worker.shape import (
        COMMAND_CONNECTIONS,
        MAIN_PROCESS_CONNECTIONS,
        SERVE_CONNECTIONS,
        available_cores,
        connections_per_process,
        worker_connections,
        worker_shape,
    )

    cpu_pool, cpu_batches = worker_shape(settings, gpu=False)
    gpu_pool, gpu_batches = worker_shape(settings, gpu=True)
    return [
        "PostgreSQL connections (the budget: sum it over the fleet, below max_connections less the reserved):",
        f"  a `tagger worker` on a CPU here ({cpu_pool}, {cpu_batches} batches at once, {available_cores()} cores): "
        f"{worker_connections(settings, gpu=False)}",
        f"  a `tagger worker` on a GPU ({gpu_pool}, {gpu_batches} batches at once): "
        f"{worker_connections(settings, gpu=True)}",
        f"  per worker process running one batch at a time: {connections_per_process(1)}, and "
        f"{MAIN_PROCESS_CONNECTIONS} per worker for its readiness checks and its healer",
        f"  `tagger serve`: {SERVE_CONNECTIONS}; every other command (`tag --wait`, `jobs wait`, `train`): "
        f"{COMMAND_CONNECTIONS}",
    ]


def cmd_storage(args: argparse.Namespace, settings: Settings) -> int:
    from tagger.errors import ConfigError
    from tagger.storage import open_storage

    urls = args.urls or [u for u in (settings.storage_url, settings.model_store) if u]
    if not urls:
        raise ConfigError("no storage to create: pass URLs, or set TAGGER_STORAGE_URL and TAGGER_MODEL_STORE")
    for url in urls:
        storage = open_storage(url)
        print(f"{storage.url}: {'created' if storage.create() else 'already there'}")
    return 0
