"""`tagger train` and `tagger sample`: run the training recipe, then register, gate, promote and re-tag."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from tagger.argtypes import positive_int
from tagger.cli.shared import print_json
from tagger.settings import Settings


def register(sub: Any) -> None:
    from tagger.training.options import get_args_parser

    p = sub.add_parser("train", help="train a model from `image_id,tags` CSV and register it")
    get_args_parser(p)
    p.set_defaults(func=cmd_train)

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


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    report = train_and_promote(args, settings)
    if args.json:
        print_json(asdict(report))
    elif report.version:
        print(
            f"model {report.version}: F2 {report.final['f2']:.4f}, accuracy {report.final['accuracy']:.4f} "
            f"on {report.valid_images} held-out images ({report.seconds:.0f}s)"
            + (" - now active" if report.activated else " - registered as candidate")
        )
    return 0


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


def train_and_promote(args: argparse.Namespace, settings: Settings) -> Any:
    """The recipe, then: register the candidate, judge it at the gate, activate it, queue the stale re-tag."""
    from tagger import promotion, registry
    from tagger.cli.shared import open_sessions
    from tagger.model.device import pick_device
    from tagger.training.gate import compare
    from tagger.training.recipe import main as recipe
    from tagger.training.recipe import say

    report, candidate = recipe(args, settings)
    if candidate is None:  # --find-lr: a plot, no model
        return report
    sessions = open_sessions(settings)
    with sessions() as session, session.begin():
        registry.register(session, candidate.meta, uri=candidate.uri, activate_if_none=False)
    gate = compare(
        sessions,
        candidate,
        threshold=args.threshold,
        margin=args.gate_margin,
        device=pick_device(settings.device),
    )
    report.gate = gate.as_dict()
    say(f"promotion gate: {gate.reason}")
    version = candidate.meta.version
    if args.no_activate:
        say(f"registered {version} as a candidate (--no-activate)")
        return report
    if not gate.promote and not args.force:
        say(f"{version} stays a candidate; `tagger models activate {version}` (or --force) overrides")
        return report
    promotion.activate(sessions, settings, version, check=False)
    report.activated = True
    if args.retag_stale:
        report.stale_job = retag_stale(sessions, settings)
    return report


def retag_stale(sessions: Any, settings: Settings) -> str | None:
    """Queue a low-priority job for every image tagged by an older version; None without a broker."""
    from tagger.jobs.producer import broker_sender, submit
    from tagger.training.recipe import say
    from tagger_client.contract import JobSpec

    if not settings.broker_url:
        say("no TAGGER_BROKER_URL: run `tagger tag --stale` to re-tag images from older models")
        return None
    job = submit(sessions, broker_sender(settings), JobSpec.new(query="stale"), settings)
    say(f"queued job {job.job_id} re-tagging images from older models (bulk queue)")
    return job.job_id
