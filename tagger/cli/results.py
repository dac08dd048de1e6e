"""`tagger results` and `tagger export`: read the suggestions workers wrote."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tagger.argtypes import probability
from tagger.cli.shared import open_sessions, print_json
from tagger.errors import ConfigError, NotFoundError
from tagger.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser(
        "results",
        help="suggested tags of one image",
        description="Suggested tags of one image, from the version that last tagged it. Name the image by a "
        "path to its file, a file:// or s3:// URL, or a key (with --storage, or alone: every storage holding "
        "that key is shown). When the image's latest attempt failed after the tags shown were made (its file "
        "replaced by one that cannot be read), that failure is shown above them and the exit code is 1. Exit "
        "code 3 when no such image was ever submitted.",
    )
    p.add_argument("image", help="a path to the file, a file:// or s3:// URL, or a key")
    p.add_argument("--storage", default=None, help="the storage the key is under (folder, file:// or s3:// URL)")
    p.add_argument("--all-versions", action="store_true", help="also the suggestions of older model versions")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser(
        "export",
        help="export suggestions as CSV or JSON lines",
        description="The active model version's suggestions (or another kept version's, --model-version), tag "
        "by tag in name order, each most probable first (ties by image id): streamed from the index the tag "
        "pages read, so memory stays flat and older versions' rows are never read. Images the active version "
        "has not tagged yet are not in it (`tagger tag --stale` tags them). CSV cells a spreadsheet would run "
        "as a formula get a leading apostrophe.",
    )
    p.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="output format (default csv)")
    p.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    p.add_argument("--tag", default=None, help="only this tag (exit code 3 if no such tag)")
    p.add_argument(
        "--min-probability", type=probability, default=0.0, help="only suggestions at or above it, 0-1 (default 0)"
    )
    p.add_argument(
        "--model-version", default=None, metavar="VERSION", help="a kept version's suggestions (default: the active)"
    )
    p.set_defaults(func=cmd_export)


def cmd_results(args: argparse.Namespace, settings: Settings) -> int:
    from tagger.results import find_images, latest_failure, suggestions_for
    from tagger.storage import storage_url_for

    sessions = open_sessions(settings, migrate=False)
    storage = storage_url_for(args.storage) if args.storage else None
    images = find_images(sessions, args.image, storage_url=storage)
    shown = [
        (image, suggestions_for(sessions, image, all_versions=args.all_versions), latest_failure(sessions, image))
        for image in images
    ]
    code = 1 if any(failure for _, _, failure in shown) else 0
    if args.json:
        print_json(
            [
                {
                    "storage": i.storage_url,
                    "key": i.key,
                    "model_version": i.version,
                    "unfamiliarity": i.unfamiliarity,
                    "familiarity": i.familiarity,
                    "suggestions": rows,
                    "latest_failure": failure.as_dict() if failure else None,
                }
                for i, rows, failure in shown
            ]
        )
        return code
    for image, rows, failure in shown:
        if len(shown) > 1 or storage is None:
            print(image.location)
        if failure is not None:
            print(
                f"  latest attempt failed (job {failure.job_id[:8]}, {failure.at:%Y-%m-%d %H:%M} UTC): {failure.reason}"
            )
            if rows:
                print("  the tags below were made before it, from the file as it was then:")
        if image.version is None:
            print("  not tagged yet")
        else:
            print(f"  {image.familiarity}")
            if not rows:
                print(f"  tagged by {image.version}: no tag above its threshold")
        for row in rows:
            note = "" if row["active"] else ", not the active model"
            print(f"  {row['tag']:<24} {row['probability']:.3f}  ({row['model_version']}{note})")
    return code


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from tagger.results import export, tag_exists

    sessions = open_sessions(settings, migrate=False)
    if args.tag and not tag_exists(sessions, args.tag):
        raise NotFoundError(f"no tag {args.tag!r} in the vocabulary; see `tagger models show`")
    if args.output != "-" and args.output.endswith("/"):
        raise ConfigError(f"--output {args.output!r} is a folder; name a file")
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8", newline="")  # noqa: SIM115
    try:
        n = export(
            sessions,
            out,
            fmt=args.format,
            tag=args.tag,
            min_probability=args.min_probability,
            version=args.model_version,
        )
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {n} suggestions", file=sys.stderr)
    return 0
