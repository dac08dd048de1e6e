"""`tagger sample`: generated stills with known tags, and their labels, to try tagger on."""

from __future__ import annotations

import argparse
from typing import Any

from tagger.argtypes import int_between
from tagger.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sample",
        help="write generated stills with known tags, and their labels.csv, to try tagger on",
        description="Writes FOLDER/stills/still_NNNNN.jpg (small synthetic stills whose tags a CNN can see: "
        "shapes, stripes, night, black-and-white, ...) and FOLDER/labels.csv (image_id,tags). FOLDER may be "
        "an s3://bucket/prefix, to try a deployment out; its labels then go where --labels says. With --bursts, "
        "also shots of near-identical stills (consecutive frames, re-encodes, resizes, crops, colour grades, "
        "burned-in subtitles) under FOLDER/films/film_NN/, and groups.csv (image_id,group: each still's shot) "
        "beside labels.csv: the true duplicate groups, to measure `tagger duplicates` and the split against.",
    )
    p.add_argument("folder", help="where to write them (created if missing): a folder or s3://bucket/prefix")
    p.add_argument("--labels", default=None, help="where to write labels.csv (default FOLDER/labels.csv)")
    p.add_argument("--count", type=int_between(0), default=200, help="how many single stills (default 200)")
    p.add_argument("--seed", type=int, default=0, help="the same seed writes the same stills (default 0)")
    p.add_argument(
        "--bursts",
        type=int_between(0),
        default=0,
        help="also write this many shots of 3-9 near-identical stills each, and groups.csv (default 0)",
    )
    p.set_defaults(func=cmd_sample)


def cmd_sample(args: argparse.Namespace, settings: Settings) -> int:
    import tempfile
    from pathlib import Path

    from tagger.errors import ConfigError
    from tagger.storage import open_storage

    if args.count + args.bursts == 0:
        raise ConfigError("nothing to write: give --count or --bursts more than 0")
    if not args.folder.startswith(("s3://", "file://")):
        root = Path(args.folder)
        labels = Path(args.labels) if args.labels else root / "labels.csv"
        stills = _write(root, labels, args)
        print(f"wrote {len(stills)} stills under {root} and their tags in {labels}{_groups_note(labels, args)}")
        return 0
    if not args.labels:
        raise ConfigError("writing to storage needs --labels FILE: where the labels CSV for `tagger train` goes")
    storage = open_storage(args.folder)
    with tempfile.TemporaryDirectory(prefix="tagger-sample-") as tmp:
        stills = _write(Path(tmp), Path(args.labels), args)
        for still in stills:
            storage.write(still.key, (Path(tmp) / still.key).read_bytes())
    note = _groups_note(Path(args.labels), args)
    print(f"wrote {len(stills)} stills under {storage.url} and their tags in {args.labels}{note}")
    return 0


def _write(root: Any, labels: Any, args: argparse.Namespace) -> list[Any]:
    """The stills under root, their labels CSV, and with bursts groups.csv beside it."""
    from tagger.sample_archive import generate, generate_bursts, write_groups, write_labels

    root.mkdir(parents=True, exist_ok=True)
    stills = generate(root, args.count, seed=args.seed) if args.count else []
    if args.bursts:
        stills += generate_bursts(root, args.bursts, seed=args.seed)
    labels.parent.mkdir(parents=True, exist_ok=True)
    if labels != root / "labels.csv" and (root / "labels.csv").exists():
        (root / "labels.csv").unlink()
    write_labels(labels, stills)
    if args.bursts:
        write_groups(labels.parent / "groups.csv", stills)
    return stills


def _groups_note(labels: Any, args: argparse.Namespace) -> str:
    return f", {args.bursts} shots of near-duplicates in {labels.parent / 'groups.csv'}" if args.bursts else ""
