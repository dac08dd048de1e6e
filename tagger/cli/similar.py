"""`tagger similar`: the stills most like one in the archive, or like a file that is not in it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tagger.argtypes import float_between, int_between
from tagger.cli.shared import open_sessions, print_json
from tagger.errors import ConfigError, ImageError
from tagger.settings import Settings


def register(sub: Any) -> None:
    from tagger_client.contract import SIMILAR_LIMIT, SIMILAR_MAX_LIMIT

    p = sub.add_parser(
        "similar",
        help="the stills most like one image (in the archive, or a file with --file)",
        description="The images most like IMAGE, most similar first (cosine similarity of their embeddings, 1 for "
        "the same picture), in the active model's space: IMAGE itself comes first. Name it as `tagger results` "
        "takes one: a path, a file:// or s3:// URL, or a key (with --storage where several storages hold it). "
        "With --file, a picture that is not in the archive (an upload to check) is embedded here with the active "
        "model, and nothing is written. Images the active model has not embedded yet (tagged before it) cannot "
        "be found; the answer says how many. Exit code 3 when the image is unknown or has no embedding from the "
        "active model, 2 when --file is not an image.",
    )
    p.add_argument("image", nargs="?", help="a path to the file, a file:// or s3:// URL, or a key")
    p.add_argument("--file", default=None, help="search by this picture instead, not in the archive (nothing stored)")
    p.add_argument("--storage", default=None, help="the storage the key is under (folder, file:// or s3:// URL)")
    p.add_argument(
        "--limit",
        type=int_between(1, SIMILAR_MAX_LIMIT),
        default=SIMILAR_LIMIT,
        help=f"at most this many (default {SIMILAR_LIMIT})",
    )
    p.add_argument(
        "--min-similarity",
        type=float_between(-1.0, 1.0),
        default=0.0,
        help="only images at least this similar, -1 to 1 (default 0)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_similar)


def cmd_similar(args: argparse.Namespace, settings: Settings) -> int:
    from tagger.similar import similar_to_image, similar_to_vector

    if (args.image is None) == (args.file is None):
        raise ConfigError("name one image, or pass --file with a picture that is not in the archive (not both)")
    sessions = open_sessions(settings, migrate=False)
    if args.file is not None:
        version_id, vector = _embed(settings, sessions, Path(args.file))
        found = similar_to_vector(
            sessions, vector, version_id=version_id, limit=args.limit, min_similarity=args.min_similarity
        )
        query = str(args.file)
    else:
        image = _one_image(sessions, args.image, args.storage)
        found = similar_to_image(sessions, image.id, limit=args.limit, min_similarity=args.min_similarity)
        query = image.location
    if args.json:
        print_json({"query": query, **found.as_dict()})
        return 0
    print(f"like {query}, in the space of {found.model_version}:")
    for hit in found.hits:
        print(f"  {hit.similarity:6.3f}  {hit.location}")
    if not found.hits:
        print("  nothing at or above --min-similarity")
    if found.awaiting_vectors:
        print(
            f"{found.awaiting_vectors} tagged images have no embedding from {found.model_version} yet and cannot be "
            "found: tag them again with it"
        )
    return 0


def _one_image(sessions: Any, ref: str, storage: str | None) -> Any:
    from tagger.results import find_images
    from tagger.storage import storage_url_for

    images = find_images(sessions, ref, storage_url=storage_url_for(storage) if storage else None)
    if len(images) > 1:
        where = ", ".join(i.storage_url for i in images)
        raise ConfigError(f"{ref!r} names images in several storages ({where}): pass --storage")
    return images[0]


def _embed(settings: Settings, sessions: Any, path: Path) -> tuple[int, Any]:
    from tagger.model.decode import DecodeLimits
    from tagger.uploads import Embedder

    data = path.read_bytes()
    limits = DecodeLimits(max_pixels=settings.max_image_pixels, draft=bool(settings.jpeg_draft))
    try:
        return Embedder(sessions, device=settings.device, limits=limits).embed(data)
    except ImageError as exc:
        raise ConfigError(f"{path} is not an image tagger reads: {exc}") from None
