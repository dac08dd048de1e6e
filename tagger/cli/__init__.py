"""The `tagger` command: the parser, `main` and its exit codes. Each subcommand lives in a module named
for its noun and imports what it needs when it runs, so `--help` stays fast."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tagger.cli import jobs, labels, models, results, serve, system, tag, train
from tagger.errors import TaggerError
from tagger.settings import Settings

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
exit codes: 0 success, 1 unexpected error or failed job, 2 configuration or usage error,
3 not found, 4 invalid model artifact, 130 interrupted.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tagger",
        description="Tag image archives with a multi-label CNN, through Celery workers, into SQL.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for noun in (train, tag, serve, results, models, labels, jobs, system):
        noun.register(sub)
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
