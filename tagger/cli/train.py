"""`tagger train`: read the labels, run the training recipe, then register, gate, promote and re-tag."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tagger.cli.shared import print_json
from tagger.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from tagger.labels import LabelledSet
    from tagger.training.recipe import TrainReport


@dataclass
class Trained:
    """What `tagger train` did: the recipe's report, then the gate's verdict, whether the model became the
    active one, and the job re-tagging images from older models (`--retag-stale`)."""

    report: TrainReport
    activated: bool = False
    gate: dict[str, Any] = field(default_factory=dict)
    stale_job: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The report's fields and the caller's, as one record (`tagger train --json`)."""
        return asdict(self.report) | {"activated": self.activated, "gate": self.gate, "stale_job": self.stale_job}


def register(sub: Any) -> None:
    from tagger.training.options import get_args_parser

    p = sub.add_parser("train", help="train a model from `image_id,tags` CSV and register it")
    get_args_parser(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    trained = train_and_promote(args, settings)
    report = trained.report
    if args.json:
        print_json(trained.as_dict())
    elif report.version:
        print(
            f"model {report.version}: F2 {report.final['f2']:.4f}, accuracy {report.final['accuracy']:.4f} "
            f"on {report.valid_images} held-out images ({report.seconds:.0f}s)"
            + (" - now active" if trained.activated else " - registered as candidate")
        )
    return 0


def train_and_promote(args: argparse.Namespace, settings: Settings) -> Trained:
    """Read the labels, run the recipe, then: register the candidate, judge it at the gate, activate it,
    queue the stale re-tag."""
    from tagger.cli.shared import open_sessions
    from tagger.errors import ConfigError
    from tagger.training.groups import group_labelled
    from tagger.training.preflight import check_run, say

    check_run(args, settings)  # before the labels are read, as before any other work (torch not loaded yet)
    sessions = open_sessions(settings) if args.labels == "db" else None  # else opened once there is a model
    labelled = load_labels(args, settings, sessions)

    from tagger import promotion, registry
    from tagger.model.device import pick_device
    from tagger.training.gate import compare
    from tagger.training.recipe import main as recipe

    if args.group_by and args.split == "key":
        raise ConfigError("--group-by keeps groups on one side of a split by groups: drop --split key")
    near = group_labelled(
        labelled,
        sessions=(sessions or open_sessions(settings)) if args.group_embeddings else None,
        threshold=settings.duplicate_threshold,
        group_by=args.group_by,
    )
    report, candidate = recipe(args, settings, near.labelled, near)
    trained = Trained(report)
    if candidate is None:  # --find-lr: a plot, no model
        return trained
    sessions = sessions or open_sessions(settings)
    with sessions() as session, session.begin():
        registry.register(session, candidate.meta, uri=candidate.uri, activate_if_none=False)
    gate = compare(
        sessions,
        candidate,
        threshold=args.threshold,
        margin=args.gate_margin,
        device=pick_device(settings.device),
    )
    trained.gate = gate.as_dict()
    say(f"promotion gate: {gate.reason}")
    version = candidate.meta.version
    if args.no_activate:
        say(f"registered {version} as a candidate (--no-activate)")
        return trained
    if not gate.promote and not args.force:
        say(f"{version} stays a candidate; `tagger models activate {version}` (or --force) overrides")
        return trained
    promotion.activate(sessions, version, broker_url=settings.broker_url, check=False)
    trained.activated = True
    if args.retag_stale:
        trained.stale_job = retag_stale(sessions, settings)
    return trained


def load_labels(args: argparse.Namespace, settings: Settings, sessions: sessionmaker[Session] | None) -> LabelledSet:
    """The dataset, each image with its storage: from a CSV (under --images) or the decisions in the
    database (`--labels db`, through `sessions`, else sessions of its own)."""
    from pathlib import Path

    from tagger.cli.shared import open_sessions
    from tagger.errors import ConfigError
    from tagger.labels import labels_from_db, read_labels_csv
    from tagger.storage import canonical_url, storage_url_for
    from tagger.training.preflight import drop_rare, say

    if args.labels == "db":
        with (sessions or open_sessions(settings))() as session:
            labelled = labels_from_db(session)
        if args.images:
            labelled = labelled.under(canonical_url(storage_url_for(args.images)))
    else:
        labelled = read_labels_csv(Path(args.labels))
        images = storage_url_for(args.images) if args.images else settings.storage_url
        if not images:
            raise ConfigError("where are the images? pass --images FOLDER|s3://bucket/prefix or set TAGGER_STORAGE_URL")
        labelled = labelled.under(canonical_url(images))
    for note in labelled.notes:
        say(f"labels: {note}")
    counts = labelled.tag_counts()
    rare = sorted((t for t, n in counts.items() if n < args.rare), key=counts.__getitem__)
    if rare:
        shown = ", ".join(f"{t} ({counts[t]})" for t in rare[:10])
        action = "dropped" if args.drop_rare else "kept (pass --drop-rare to drop them)"
        say(f"{len(rare)} tag(s) seen fewer than {args.rare} times, {action}: {shown}")
        if args.drop_rare:
            labelled, _ = drop_rare(labelled, args.rare)
    return labelled


def retag_stale(sessions: Any, settings: Settings) -> str | None:
    """Queue a low-priority job for every image tagged by an older version; None without a broker."""
    from tagger.broker.send import broker_sender
    from tagger.jobs.producer import submit
    from tagger.training.recipe import say
    from tagger_client.contract import JobSpec

    if not settings.broker_url:
        say("no TAGGER_BROKER_URL: run `tagger tag --stale` to re-tag images from older models")
        return None
    job = submit(sessions, broker_sender(settings), JobSpec.new(query="stale"), settings)
    say(f"queued job {job.job_id} re-tagging images from older models (bulk queue)")
    return job.job_id
