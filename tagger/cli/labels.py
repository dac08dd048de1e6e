"""`tagger labels`: tags people confirmed or rejected, the training data of `tagger train --labels db`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tagger.argtypes import positive_int
from tagger.cli.shared import open_sessions, print_json
from tagger.errors import ConfigError
from tagger.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser("labels", help="tags confirmed by people: the training data of `tagger train --labels db`")
    lsub = p.add_subparsers(dest="labels_command", required=True)
    m = lsub.add_parser("add", help="tags a person entered by hand for one image")
    m.add_argument("key", help="the image's key under --storage")
    m.add_argument("tags", nargs="+", help="tag names: single words (black-and-white), lower-cased")
    m.add_argument("--storage", default=None, help="where the image lives (default TAGGER_STORAGE_URL)")
    m = lsub.add_parser("accept", help="accept the suggestions of one image (all, or the named tags)")
    m.add_argument("image", help="a path to the file, a file:// or s3:// URL, or a key")
    m.add_argument("tags", nargs="*", help="only these tags (default: every suggestion)")
    m.add_argument("--storage", default=None, help="the storage the key is under")
    m = lsub.add_parser(
        "import",
        help="load an `image_id,tags` CSV, or the keywords of XMP sidecars and images, as labels",
        description="Load an `image_id,tags` CSV as hand-entered labels, or (--from-xmp) the keywords people gave "
        "their stills in XMP sidecars (photo.jpg.xmp, photo.xmp) and in XMP and IPTC embedded in JPEG, TIFF and "
        "PNG files, mapped to the vocabulary (docs/xmp.md). Unknown keywords are counted, never added; a re-import "
        "adds nothing twice and never overrules a decision made on the review pages.",
    )
    m.add_argument(
        "csv", nargs="?", help="a CSV of image_id,tags (tags separated by spaces or commas; a header is optional)"
    )
    m.add_argument("--storage", default=None, help="where the images live (default TAGGER_STORAGE_URL)")
    m.add_argument("--from-xmp", metavar="FOLDER|s3://...", default=None, help="read keywords of this storage's stills")
    m.add_argument("--mapping", default=None, help="with --from-xmp: a `keyword,tag` CSV for names that differ")
    m.add_argument(
        "--no-embedded", action="store_true", help="with --from-xmp: sidecars only (no ExifTool, no image read)"
    )
    m.add_argument("--json", action="store_true", help="with --from-xmp: print the report as JSON")
    m.add_argument(
        "--restart",
        action="store_true",
        help="with --from-xmp: read every image again, not continuing after a stopped import's position",
    )

    m = lsub.add_parser(
        "suspects",
        help="the labels a model's training found most likely wrong, to confirm or correct",
        description="Lists the (image, tag) labels that models which never trained on the image contradict most "
        "(confident learning; `tagger train --folds K` looks among every labelled image, else among the held-out "
        "ones), most suspect first, with any decision made since. Correct one on the review page "
        "/review/models/VERSION/suspects (or `tagger labels add`); the next `tagger train --labels db` uses it.",
    )
    m.add_argument("--version", default=None, help="the model version whose training found them (default the active)")
    m.add_argument("--limit", type=positive_int, default=50, help="how many to list (default 50)")
    m.add_argument("--all", action="store_true", help="also those a person has decided since")
    m.add_argument("--json", action="store_true", help="print JSON")
    m = lsub.add_parser("stats", help="how many images are labelled, and the positives and negatives per tag")
    m.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_labels)


def cmd_labels(args: argparse.Namespace, settings: Settings) -> int:
    from tagger import labels
    from tagger.storage import storage_url_for

    if args.labels_command == "suspects":
        version, found = labels.label_suspects(open_sessions(settings, migrate=False), args.version)
        shown = [e for e in found if args.all or e["decision"] is None][: args.limit]
        if args.json:
            print_json({"version": version, "suspects": shown})
            return 0
        print(
            f"{len(shown)} of {len(found)} label(s) {version}'s training found most likely wrong, most suspect first:"
        )
        for e in shown:
            label = "labelled" if e["labelled"] else "not labelled"
            decided = {None: "", True: "  (since accepted)", False: "  (since rejected)"}[e["decision"]]
            print(
                f"  {e['key']:<40} {e['tag']:<20} {label:<13} p={e['probability']:.3f}  "
                f"score {e['score']:+.3f}{decided}"
            )
        return 0
    if args.labels_command == "stats":
        total, per_tag = labels.stats(open_sessions(settings, migrate=False))
        if args.json:
            print_json({"images": total, "tags": {t: {"positive": p, "negative": n} for t, p, n in per_tag}})
            return 0
        print(f"{total} labelled image(s)")
        for tag, positive, negative in per_tag:
            print(f"  {tag:<24} {positive:>7} positive {negative:>7} negative")
        return 0
    if args.labels_command == "import" and args.from_xmp:
        return _import_xmp(args, settings)
    storage = storage_url_for(args.storage) if args.storage else settings.storage_url or None
    sessions = open_sessions(settings)
    if args.labels_command == "add":
        if storage is None:
            raise ConfigError(
                "where does the image live? pass --storage FOLDER|s3://bucket/prefix or set TAGGER_STORAGE_URL"
            )
        n = labels.add(sessions, args.key, args.tags, storage_url=storage, by="cli")
        print(f"{args.key}: {n} label(s)")
    elif args.labels_command == "accept":
        from tagger.results import find_images

        images = find_images(sessions, args.image, storage_url=args.storage and storage)
        if len(images) > 1:
            where = ", ".join(i.storage_url for i in images)
            raise ConfigError(f"{args.image!r} names {len(images)} images ({where}); pass --storage")
        accepted = labels.accept(sessions, images[0].id, args.tags or None, by="cli")
        print(f"{images[0].location}: accepted {', '.join(accepted) or 'nothing (no matching suggestions)'}")
    else:
        from pathlib import Path

        if storage is None:
            raise ConfigError(
                "where do the images live? pass --storage FOLDER|s3://bucket/prefix or set TAGGER_STORAGE_URL"
            )
        if not args.csv:
            raise ConfigError("name a labels CSV, or read keywords with --from-xmp FOLDER|s3://bucket/prefix")
        data, n = labels.import_csv(sessions, Path(args.csv), storage_url=storage)
        for note in data.notes:
            print(f"note: {note}")
        print(f"imported {n} label(s) on {len(data.keys)} image(s) from {args.csv}")
    return 0


def _import_xmp(args: argparse.Namespace, settings: Settings) -> int:
    """`labels import --from-xmp`: keywords to labels, then what was added and what was not known."""
    from pathlib import Path

    from tqdm import tqdm

    from tagger.storage import open_storage, storage_url_for
    from tagger.xmp.keywords import import_xmp

    if args.csv or args.storage:
        raise ConfigError("--from-xmp names the storage to read; give no CSV and no --storage with it")
    storage = open_storage(storage_url_for(args.from_xmp))
    sessions = open_sessions(settings)
    with tqdm(unit="image", desc="keywords", disable=None, file=sys.stderr) as bar:
        report = import_xmp(
            sessions,
            storage,
            root=settings.xmp_root,
            mapping_file=Path(args.mapping) if args.mapping else None,
            embedded=not args.no_embedded,
            progress=bar.update,
            var_dir=settings.var_dir,
            restart=args.restart,
        )
    if args.json:
        print_json(
            {
                "images": report.images,
                "labelled": report.labelled,
                "added": report.added,
                "unknown": dict(report.unknown.most_common()),
                "ignored": dict(report.ignored.most_common()),
                "lone_sidecars": report.lone_sidecars,
                "unreadable": dict(report.unreadable),
                "resumed_after": report.resumed_after,
                "restarted": report.restarted,
            }
        )
        return 0
    if report.resumed_after:
        print(f"continued after the {report.resumed_after} image(s) a stopped import had read (--restart reads all)")
    if report.restarted:
        print(f"started over: {report.restarted}")
    print(
        f"{report.images} image(s) read, {report.labelled} with keywords of the vocabulary: "
        f"{report.added} label(s) added"
    )
    if report.unknown:
        print(f"{sum(report.unknown.values())} unknown keyword use(s), not added (a --mapping file maps them):")
        for keyword, n in report.unknown.most_common(20):
            print(f"  {n:>7}  {keyword}")
    if report.lone_sidecars:
        print(f"{report.lone_sidecars} sidecar(s) with no image beside them")
    for why, n in report.unreadable.items():
        print(f"{n} sidecar(s) not read: {why}")
    return 0
