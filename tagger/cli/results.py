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
        help="export suggestions as CSV, JSON lines or XMP sidecars",
        description="The active model version's suggestions (or another kept version's, --model-version), tag "
        "by tag in name order, each most probable first (ties by image id): streamed from the index the tag "
        "pages read, so memory stays flat and older versions' rows are never read. Images the active version "
        "has not tagged yet are not in it (`tagger tag --stale` tags them). CSV cells a spreadsheet would run "
        "as a formula get a leading apostrophe. --format xmp writes one XMP sidecar per image of one storage "
        "into the folder --output (mirroring the keys) or beside the images (--in-place, a folder storage), "
        "merged into any sidecar already there: only tagger's own keywords and namespace are replaced "
        "(docs/xmp.md). A stopped XMP export continues where it stopped when run again.",
    )
    p.add_argument("--format", choices=["csv", "jsonl", "xmp"], default="csv", help="output format (default csv)")
    p.add_argument("--output", "-o", default="-", help="file to write (default: stdout); with xmp, a folder")
    p.add_argument("--tag", default=None, help="only this tag (exit code 3 if no such tag)")
    p.add_argument(
        "--min-probability", type=probability, default=0.0, help="only suggestions at or above it, 0-1 (default 0)"
    )
    p.add_argument(
        "--model-version", default=None, metavar="VERSION", help="a kept version's suggestions (default: the active)"
    )
    xmp = p.add_argument_group("xmp sidecars (--format xmp)")
    xmp.add_argument("--storage", default=None, help="whose images (default TAGGER_STORAGE_URL, or the only one)")
    xmp.add_argument("--in-place", action="store_true", help="write each sidecar beside its image (a folder storage)")
    xmp.add_argument(
        "--sidecar-name",
        choices=["photo.jpg.xmp", "photo.xmp"],
        default="photo.jpg.xmp",
        help="photo.jpg.xmp (darktable, digiKam) or photo.xmp (Lightroom, Capture One); default photo.jpg.xmp",
    )
    xmp.add_argument("--no-flat", action="store_true", help="keywords only in the hierarchy, none added to dc:subject")
    xmp.add_argument(
        "--accepted-to-keywords",
        action="store_true",
        help="accepted tags also become the person's own keywords (top level; tagger never removes them)",
    )
    xmp.add_argument("--restart", action="store_true", help="write every sidecar again, not from where a run stopped")
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
    if args.format == "xmp":
        return _export_xmp(args, settings, sessions)
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


def _export_xmp(args: argparse.Namespace, settings: Settings, sessions: Any) -> int:
    """`tagger export --format xmp`: the choices checked and made into one XmpExport, then the sidecars."""
    from tqdm import tqdm

    from tagger.storage import LocalStorage, open_storage, storage_url_for
    from tagger.xmp.export import XmpExport, export_xmp
    from tagger.xmp.sidecar import SidecarOptions

    if args.tag or args.min_probability:
        raise ConfigError("--tag and --min-probability are for csv and jsonl: a sidecar holds an image's every tag")
    storage = _one_storage(sessions, storage_url_for(args.storage) if args.storage else settings.storage_url)
    if args.in_place == (args.output != "-"):
        raise ConfigError("--format xmp: name a folder with --output DIR, or write beside the images with --in-place")
    if args.in_place and not storage.startswith("file://"):
        raise ConfigError(f"--in-place writes beside the images of a folder storage; {storage} is not one (use -o)")
    target = open_storage(storage) if args.in_place else LocalStorage(args.output)
    target.create()
    job = XmpExport(
        storage_url=storage,
        target=target,
        naming=args.sidecar_name,
        options=SidecarOptions(
            root=settings.xmp_root, flat=not args.no_flat, accepted_to_keywords=args.accepted_to_keywords
        ),
        version=args.model_version,
    )
    with tqdm(unit="image", desc="xmp sidecars", disable=None, file=sys.stderr) as bar:
        report = export_xmp(sessions, job, var_dir=settings.var_dir, restart=args.restart, progress=bar.update)
    if report.resumed_after is not None:
        print(f"continued a stopped export after image id {report.resumed_after}", file=sys.stderr)
    print(
        f"wrote {report.written} sidecar(s) of {report.model_version} to {target.url} "
        f"({report.merged} merged into one that was there)",
        file=sys.stderr,
    )
    for line in report.unreadable:
        print(f"  left as it was (not XMP tagger can read): {line}", file=sys.stderr)
    if report.unreadable_count:
        print(f"{report.unreadable_count} sidecar(s) left as they were", file=sys.stderr)
    return 1 if report.unreadable_count else 0


def _one_storage(sessions: Any, wanted: str) -> str:
    """The storage whose images are exported: the one named, or the only one the database knows."""
    from sqlalchemy import select

    from tagger.db.schema import Storage
    from tagger.storage import canonical_url

    if wanted:
        return canonical_url(wanted)
    with sessions() as session:
        urls = list(session.scalars(select(Storage.url).order_by(Storage.url).limit(6)))
    if len(urls) != 1:
        known = ", ".join(urls[:5]) or "none yet"
        raise ConfigError(f"which storage's images? pass --storage FOLDER|s3://bucket/prefix (known: {known})")
    return urls[0]
