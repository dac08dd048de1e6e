"""The `tagger` command: the parser, `main` and its exit codes. Each subcommand lives in a module named
for its noun and imports what it needs when it runs, so `--help` stays fast."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

from tagger.cli import (
    demo,
    duplicates,
    embed,
    jobs,
    labels,
    models,
    results,
    sample,
    serve,
    similar,
    system,
    tag,
    tokens,
    train,
    workers,
)
from tagger.cli.shared import close_sessions
from tagger.errors import ConfigError, NotFoundError, TaggerError, UnavailableError
from tagger.logs import configure as configure_logging
from tagger.settings import Settings

EPILOG = """\
examples:
  tagger demo                               sample archive -> train -> bulk-tag -> report
  tagger tag ./stills --wait                tag a folder (starts its own Redis + workers)
  tagger tag s3://bucket/stills --wait      tag an S3 prefix (endpoint from AWS_ENDPOINT_URL)
  tagger worker                             serve TAGGER_BROKER_URL (one per machine/GPU)
  tagger workers                            live workers, the model each serves, queue depths
  tagger serve                              the HTTP API (tokens: `tagger tokens create NAME --role ROLE`)
  tagger train --labels labels.csv --images ./stills
  tagger results stills/0001.jpg            suggested tags for one image
  tagger similar stills/0001.jpg            the stills most like it (--file upload.jpg: one not in the archive)
  tagger duplicates --threshold 0.99        groups of near-identical stills
  tagger embed                              vectors for the stills tagged before they were kept
  tagger export --format csv > tags.csv

Configuration comes from TAGGER_* environment variables: `tagger config` lists them.
exit codes: 0 success, 1 unexpected error or failed job, 2 configuration or usage error,
3 not found, 4 invalid model artifact, 5 a server (database, broker, storage) unreachable,
130 interrupted (Ctrl-C or SIGTERM).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tagger",
        description="Tag image archives with a multi-label CNN, through Celery workers, into SQL.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from tagger import __version__

    parser.add_argument("--version", action="version", version=f"tagger {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    nouns = (
        train,
        demo,
        sample,
        tag,
        serve,
        workers,
        results,
        similar,
        duplicates,
        embed,
        models,
        labels,
        jobs,
        tokens,
        system,
    )
    for noun in nouns:
        noun.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM cleans up as Ctrl-C does
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format)
        for quiet in ("alembic", "botocore", "boto3", "urllib3", "s3transfer"):
            logging.getLogger(quiet).setLevel(max(logging.WARNING, logging.getLogger().level))
        code = int(args.func(args, settings) or 0)
        sys.stdout.flush()  # here, so a reader that went away (`| head`) is a BrokenPipeError we can catch
        return code
    except TaggerError as exc:
        print(f"tagger: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tagger: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tagger export | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        unreachable = _unreachable(exc)
        if unreachable is not None:
            print(f"tagger: error: {unreachable}", file=sys.stderr)
            return UnavailableError.exit_code
        if isinstance(exc, OSError) and exc.filename is not None:  # a path given on the command line, mostly
            print(f"tagger: error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
            missing = isinstance(exc, FileNotFoundError | NotADirectoryError)
            return NotFoundError.exit_code if missing else ConfigError.exit_code
        raise
    finally:
        close_sessions()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _unreachable(exc: BaseException) -> str | None:
    """One line for a server that cannot be reached (no traceback, no password); None for anything else."""
    from kombu.exceptions import OperationalError as BrokerError
    from sqlalchemy.exc import OperationalError as DatabaseError

    from tagger.errors import first_line

    if isinstance(exc, DatabaseError):
        return f"the database cannot be reached: {first_line(exc)}"
    if isinstance(exc, BrokerError | ConnectionRefusedError) or type(exc).__module__.startswith("redis"):
        return f"the broker cannot be reached: {first_line(exc)}"
    return None
