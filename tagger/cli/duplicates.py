"""`tagger duplicates`: near-identical stills gathered into groups, in the active model's space."""

from __future__ import annotations

import argparse
from typing import Any

from tagger.argtypes import float_between, int_between
from tagger.cli.shared import open_sessions, print_json
from tagger.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser(
        "duplicates",
        help="groups of near-identical stills (re-encodes, resizes, crops, grades, subtitles, frames of one shot)",
        description="Groups of near-identical stills: two stills whose embeddings are at least --threshold "
        "similar (cosine, 1 for the same picture) are in one group, and so is every still linked to them "
        "through such pairs. Only stills the active model embedded take part; the answer says how many await "
        "their vectors. The default threshold (TAGGER_DUPLICATE_THRESHOLD) was measured on generated bursts; "
        "raise it for fewer, surer groups, lower it to catch heavier edits.",
    )
    p.add_argument(
        "--threshold",
        type=float_between(0.0, 1.0, open_low=True),
        default=None,
        help="similarity at or above which two stills are near-duplicates (default TAGGER_DUPLICATE_THRESHOLD)",
    )
    p.add_argument("--min-size", type=int_between(2), default=2, help="only groups of at least this many (default 2)")
    p.add_argument("--limit", type=int_between(1), default=None, help="at most this many groups (default all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_duplicates)


def cmd_duplicates(args: argparse.Namespace, settings: Settings) -> int:
    from tagger.duplicates import find_duplicates

    threshold = args.threshold if args.threshold is not None else settings.duplicate_threshold
    sessions = open_sessions(settings, migrate=False)
    found = find_duplicates(sessions, threshold=threshold, min_size=args.min_size, limit=args.limit or 2**62, cursor=0)
    if args.json:
        print_json(found.as_dict())
        return 0
    stills = sum(g.size for g in found.groups)
    print(
        f"{len(found.groups)} groups of near-identical stills ({stills} stills) at similarity {threshold:g} or "
        f"more, in the space of {found.model_version}:"
    )
    for group in found.groups:
        print(f"  {group.size} stills, similarity {group.similarity:.3f} or more:")
        for m in group.members:
            print(f"    {m.storage_url}/{m.key}")
    if found.awaiting_vectors:
        print(
            f"{found.awaiting_vectors} tagged images have no embedding from {found.model_version} yet and are not "
            "compared: tag them again with it"
        )
    return 0
