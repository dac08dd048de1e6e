"""`tagger embed`: vectors for the images tagged before embeddings were kept, and nothing else rewritten."""

from __future__ import annotations

import argparse
from typing import Any

from tagger.argtypes import int_between
from tagger.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser(
        "embed",
        help="give the images tagged before embeddings were kept their vectors (no suggestion is rewritten)",
        description="Embeds, in this process, the images the active model tagged but has no vector of (tagged "
        "before embeddings were kept), as a worker would embed them, and writes only their vectors: no "
        "suggestion, tag or image row changes. Run it once after upgrading, beside the workers; it can be "
        "stopped and run again (it continues with the images still without a vector). With --every-version, "
        "images an older model tagged are embedded too (they become searchable; their suggestions stay that "
        "model's until they are tagged again). Exit code 3 without an active model.",
    )
    p.add_argument("--every-version", action="store_true", help="also images an older model version tagged")
    p.add_argument("--limit", type=int_between(1), default=None, help="at most this many images (default all)")
    p.add_argument(
        "--batch-size",
        type=int_between(1, 1024),
        default=None,
        help="images per forward pass (default TAGGER_BATCH_SIZE)",
    )
    p.set_defaults(func=cmd_embed)


def cmd_embed(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    from tagger.cli.shared import open_sessions
    from tagger.model.decode import DecodeLimits
    from tagger.uploads import Embedder, embed_missing

    sessions = open_sessions(settings, migrate=False)
    limits = DecodeLimits(max_pixels=settings.max_image_pixels, draft=bool(settings.jpeg_draft))
    done = embed_missing(
        sessions,
        Embedder(sessions, device=settings.device, limits=limits),
        batch_size=args.batch_size or settings.batch_size,
        every_version=args.every_version,
        limit=args.limit,
        max_bytes=settings.max_image_bytes,
        progress=lambda n: print(f"  {n} embedded", file=sys.stderr) if n % 1000 < (args.batch_size or 32) else None,
    )
    print(f"embedded {done.embedded} images with {done.version}; no suggestion was rewritten")
    for where, reason in list(done.failed.items())[:20]:
        print(f"  not embedded: {where}: {reason}")
    if len(done.failed) > 20:
        print(f"  ... and {len(done.failed) - 20} more that could not be read")
    if done.swapped:
        print("stopped: another model became active; its images get their vectors when it tags them")
    return 1 if done.failed else 0
