"""`tagger db` and `tagger config`: the schema and the settings."""

from __future__ import annotations

import argparse
from typing import Any

from tagger.cli.shared import open_sessions
from tagger.settings import Settings, describe, redacted


def register(sub: Any) -> None:
    p = sub.add_parser("db", help="database schema management")
    dsub = p.add_subparsers(dest="db_command", required=True)
    dsub.add_parser("upgrade", help="apply Alembic migrations up to the newest")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("config", help="show every TAGGER_* setting with its value and meaning")
    p.set_defaults(func=cmd_config)


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    open_sessions(settings, migrate=True)
    print(f"database schema is up to date: {redacted('database_url', settings.database_url)}")
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    for var, default, help_text in describe():
        name = var.removeprefix("TAGGER_").lower()
        value = redacted(name, getattr(settings, name))
        print(f"{var:<28} = {value:<40} {help_text} [default: {default or 'see text'}]")
    return 0
