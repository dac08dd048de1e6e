"""`tagger labels`: tags people confirmed, the training data of `tagger train --labels db`."""

from __future__ import annotations

import argparse
from typing import Any

from tagger.cli.shared import open_sessions
from tagger.settings import Settings


def register(sub: Any) -> None:
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
    lsub.add_parser("stats", help="how many images and labels per tag")
    p.set_defaults(func=cmd_labels)


def cmd_labels(args: argparse.Namespace, settings: Settings) -> int:
    from tagger import labels

    sessions = open_sessions(settings)
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
