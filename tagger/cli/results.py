"""`tagger results` and `tagger export`: read the suggestions workers wrote."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tagger.cli.shared import open_sessions, print_json
from tagger.settings import Settings


def register(sub: Any) -> None:
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


def cmd_results(args: argparse.Namespace, settings: Settings) -> int:
    from tagger.results import suggestions_for

    sessions = open_sessions(settings)
    rows = suggestions_for(sessions, args.key, all_versions=args.all_versions)
    if args.json:
        print_json({"key": args.key, "suggestions": rows})
        return 0
    if not rows:
        print(f"{args.key}: no suggestions (not tagged yet, or no tag above threshold)")
    for row in rows:
        print(f"{row['tag']:<24} {row['probability']:.3f}  ({row['model_version']})")
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from tagger.results import export

    sessions = open_sessions(settings)
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        n = export(sessions, out, fmt=args.format, tag=args.tag, min_probability=args.min_probability)
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {n} suggestions", file=sys.stderr)
    return 0
