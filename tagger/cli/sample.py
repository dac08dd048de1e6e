"""`tagger sample`: generated stills with known tags, and their labels, to try tagger on."""

from __future__ import annotations

import argparse
from typing import Any

from tagger.argtypes import positive_int
from tagger.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sample",
        help="write generated stills with known tags, and their labels.csv, to try tagger on",
        description="Writes FOLDER/stills/still_NNNNN.jpg (small synthetic stills whose tags a CNN can see: "
        "shapes, stripes, night, black-and-white, ...) and FOLDER/labels.csv (image_id,tags). FOLDER may be "
        "an s3://bucket/prefix, to try a deployment out; its labels then go where --labels says.",
    )
    p.add_argument("folder", help="where to write them (created if missing): a folder or s3://bucket/prefix")
    p.add_argument("--labels", default=None, help="where to write labels.csv (default FOLDER/labels.csv)")
    p.add_argument("--count", type=positive_int, default=200, help="how many stills (default 200)")
    p.add_argument("--seed", type=int, default=0, help="the same seed writes the same stills (default 0)")
    p.set_defaults(func=cmd_sample)


def cmd_sample(args: argparse.Namespace, settings: Settings) -> int:
    import shutil
    import tempfile
    from pathlib import Path

    from tagger.errors import ConfigError
    from tagger.sample_archive import generate, write_labels
    from tagger.storage import open_storage

    if not args.folder.startswith(("s3://", "file://")):
        root = Path(args.folder)
        stills = generate(root, args.count, seed=args.seed)
        labels = Path(args.labels) if args.labels else root / "labels.csv"
        if labels != root / "labels.csv":
            labels.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(root / "labels.csv", labels)
        print(f"wrote {len(stills)} stills under {root / 'stills'} and their tags in {labels}")
        return 0
    if not args.labels:
        raise ConfigError("writing to storage needs --labels FILE: where the labels CSV for `tagger train` goes")
    storage = open_storage(args.folder)
    with tempfile.TemporaryDirectory(prefix="tagger-sample-") as tmp:
        stills = generate(Path(tmp), args.count, seed=args.seed)
        for still in stills:
            storage.write(still.key, (Path(tmp) / still.key).read_bytes())
    Path(args.labels).parent.mkdir(parents=True, exist_ok=True)
    write_labels(Path(args.labels), stills)
    print(f"wrote {len(stills)} stills under {storage.url}/stills and their tags in {args.labels}")
    return 0
