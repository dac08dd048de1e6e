"""`tagger sample`: generated stills with known tags, and their labels, to try tagger on."""

from __future__ import annotations

import argparse
from typing import Any

from tagger.argtypes import float_between, int_between
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
    p.add_argument(
        "--out-of-domain",
        type=int_between(0),
        default=0,
        metavar="N",
        help="also write N posters (large text, line art: another visual domain) under FOLDER/posters/, unlabelled, "
        "for the unfamiliarity score to flag (default 0)",
    )
    p.add_argument(
        "--wrong-labels",
        type=float_between(0.0, 0.5),
        default=0.0,
        metavar="SHARE",
        help="flip one tag's label on this share of the stills in labels.csv (e.g. 0.05), and record the truth in "
        "wrong_labels.csv beside it, for the label-error ranking to find (default 0)",
    )
    p.set_defaults(func=cmd_sample)


def cmd_sample(args: argparse.Namespace, settings: Settings) -> int:
    import tempfile
    from pathlib import Path

    from tagger.errors import ConfigError
    from tagger.sample_archive import (
        flip_labels,
        generate,
        generate_bursts,
        generate_posters,
        write_flips,
        write_groups,
        write_labels,
    )
    from tagger.storage import open_storage

    if args.count + args.bursts == 0:
        raise ConfigError("nothing to write: give --count or --bursts more than 0")
    local = not args.folder.startswith(("s3://", "file://"))
    if not local and not args.labels:
        raise ConfigError("writing to storage needs --labels FILE: where the labels CSV for `tagger train` goes")
    with tempfile.TemporaryDirectory(prefix="tagger-sample-") as tmp:
        root = Path(args.folder) if local else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        stills = generate(root, args.count, seed=args.seed) if args.count else []
        if args.bursts:
            stills += generate_bursts(root, args.bursts, seed=args.seed)
        posters = generate_posters(root, args.out_of_domain, seed=args.seed)
        if local:
            where = str(root)
        else:
            storage = open_storage(args.folder)
            for key in [s.key for s in stills] + posters:
                storage.write(key, (root / key).read_bytes())
            where = storage.url
        labels = Path(args.labels) if args.labels else root / "labels.csv"
        labels.parent.mkdir(parents=True, exist_ok=True)
        if local and labels != root / "labels.csv" and (root / "labels.csv").exists():
            (root / "labels.csv").unlink()
        labelled, flips = flip_labels(stills, args.wrong_labels, seed=args.seed)
        write_labels(labels, labelled)
        if args.bursts:
            write_groups(labels.parent / "groups.csv", stills)
    groups = f", {args.bursts} shots of near-duplicates in {labels.parent / 'groups.csv'}" if args.bursts else ""
    print(f"wrote {len(stills)} stills under {where} and their tags in {labels}{groups}")
    if posters:
        print(f"wrote {len(posters)} posters (another visual domain, unlabelled) under {where}/posters")
    if flips:
        truth = labels.parent / "wrong_labels.csv"
        write_flips(truth, flips)
        print(f"flipped one label on {len(flips)} stills in {labels}; the truth is in {truth}")
    return 0
