"""`tagger demo`: the main job on embedded defaults, end to end, with an honest report.

sample archive -> train on 75% -> bulk-tag 100% through embedded Redis and real worker
processes -> precision/recall per tag on the 25% the model never saw.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tagger.settings import Settings, redacted


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="generate a sample archive, train on it, bulk-tag it, report")
    p.add_argument("--images", type=int, default=2000, help="stills to generate (default 2000)")
    p.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    p.add_argument(
        "--size", type=int, default=64, help="model input size; small keeps the demo fast on CPU (default 64)"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="`tagger worker`s to start, each with a process per core (default 1)"
    )
    p.add_argument("--dir", default=None, help="where to write the sample archive (default: VAR/demo)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from tagger import registry
    from tagger.broker.send import broker_sender
    from tagger.cli.train import train_and_promote
    from tagger.db import make_engine, make_sessionmaker
    from tagger.jobs.producer import submit
    from tagger.jobs.progress import wait
    from tagger.sample_archive import generate, write_labels
    from tagger.training.options import get_args_parser
    from tagger.worker.local import start_local_cluster
    from tagger_client.contract import JobSpec

    started = time.monotonic()
    root = Path(args.dir) if args.dir else settings.var_dir / "demo"
    archive = root / "archive"
    if archive.exists():
        shutil.rmtree(archive)
    print(f"[1/4] generating {args.images} sample stills with known tags in {archive}")
    stills = generate(archive, args.images, seed=1)
    cut = int(len(stills) * 0.75)
    train_stills, held_out = stills[:cut], stills[cut:]
    write_labels(root / "train_labels.csv", train_stills)

    print(f"[2/4] training on {len(train_stills)} stills (held out: {len(held_out)})")
    # No downloads in the demo: random init, so no body freezing and one learning rate for all layers;
    # no rotation or zoom, which would cut the "frame" tag's border off the synthetic stills.
    train_args = get_args_parser().parse_args(
        ["--labels", str(root / "train_labels.csv"), "--images", str(archive), "--size", str(args.size)]
        + ["--epochs", str(args.epochs), "--freeze-epochs", "0", "--batch-size", "32", "--lr", "3e-3"]
        + ["--random-init", "--lr-spread", "1", "--max-rotate", "0", "--max-zoom", "1", "--max-lighting", "0.1"]
        + ["--plots", str(root), "--checkpoint", str(root / "checkpoint")]
    )
    trained = train_and_promote(train_args, settings)
    report = trained.report
    assert report.version is not None  # not --find-lr: a model was saved
    version = report.version
    engine = make_engine(settings.database_url)  # training migrated it when registering the model
    sessions = make_sessionmaker(engine)
    if not trained.activated:  # an earlier demo's model is active and the gate kept it; this demo measures its own
        with sessions() as session, session.begin():
            registry.activate(session, version)
    print(
        f"      model {report.version}: validation F2 {report.final['f2']:.3f} at 0.2, "
        f"{report.final['f2_calibrated']:.3f} with calibrated thresholds; curves: {report.plots['curves']}"
    )

    print(f"[3/4] bulk-tagging all {len(stills)} stills through Redis and {args.workers} `tagger worker`(s)")
    storage_url = archive.resolve().as_uri()
    with ExitStack() as stack:
        workers = start_local_cluster(stack, settings, args.workers)
        spec = JobSpec.new(prefix="", storage_url=storage_url, incremental=False)  # every still, by this model
        job = submit(sessions, broker_sender(settings, workers.settings.broker_url), spec, settings)
        with workers.explaining():
            result = wait(sessions, job.job_id, timeout=600, alive=workers.alive)

    print("[4/4] measuring suggestions against the known tags of the held-out stills")
    predicted = _suggestions(sessions, version)
    truth = {s.key: set(s.tags) for s in held_out}
    _report(truth, predicted, result, settings, time.monotonic() - started)
    engine.dispose()
    return 0 if result.done == len(stills) else 1


def _suggestions(sessions, version: str) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from tagger.db.schema import Image, ModelVersion, Suggestion, Tag

    out: dict[str, dict[str, float]] = defaultdict(dict)
    with sessions() as session:
        rows = session.execute(
            select(Image.key, Tag.name, Suggestion.probability)
            .join(Image, Image.id == Suggestion.image_id)
            .join(Tag, Tag.id == Suggestion.tag_id)
            .join(ModelVersion, ModelVersion.id == Suggestion.model_version_id)
            .where(ModelVersion.version == version)
        ).all()
    for key, tag, p in rows:
        out[key][tag] = p
    return out


def samples_f2(truth: dict[str, set[str]], predicted: dict[str, dict[str, float]]) -> float:
    """F2 per image of the suggested tag set against the known one, averaged over images."""
    scores = []
    for key, known in truth.items():
        got = set(predicted.get(key, {}))
        tp = len(known & got)
        p, r = (tp / len(got) if got else 0.0), (tp / len(known) if known else 0.0)
        scores.append(5 * p * r / (4 * p + r) if p + r else 0.0)
    return sum(scores) / max(1, len(scores))


def _report(
    truth: dict[str, set[str]], predicted: dict[str, dict[str, float]], job, settings: Settings, seconds: float
) -> None:  # type: ignore[no-untyped-def]
    from tagger.sample_archive import TAGS

    print()
    print(f"images tagged: {job.done} of {job.total} ({job.failed} failed) at {job.rate or 0:.1f} images/s")
    print(f"per-tag precision and recall on {len(truth)} held-out stills (never seen in training):")
    print(f"  {'tag':<18} {'precision':>9} {'recall':>7} {'support':>8}")
    tp_all = fp_all = fn_all = 0
    for tag in TAGS:
        tp = sum(1 for k, t in truth.items() if tag in t and tag in predicted.get(k, {}))
        fp = sum(1 for k, t in truth.items() if tag not in t and tag in predicted.get(k, {}))
        fn = sum(1 for k, t in truth.items() if tag in t and tag not in predicted.get(k, {}))
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        print(f"  {tag:<18} {precision:>9.2f} {recall:>7.2f} {tp + fn:>8}")
    micro_p = tp_all / (tp_all + fp_all) if tp_all + fp_all else 0.0
    micro_r = tp_all / (tp_all + fn_all) if tp_all + fn_all else 0.0
    print(f"  {'all tags (micro)':<18} {micro_p:>9.2f} {micro_r:>7.2f} {tp_all + fn_all:>8}")
    print(f"  F2 (samples-averaged, as fastai) of the served suggestions: {samples_f2(truth, predicted):.3f}")
    print("\nexample suggestions (held-out stills):")
    for key in list(truth)[:5]:
        tags = ", ".join(f"{t} {p:.2f}" for t, p in sorted(predicted.get(key, {}).items(), key=lambda x: -x[1]))
        print(f"  {key}: {tags or '(none)'}   [known: {' '.join(sorted(truth[key]))}]")
    print(f"\nresults are in {redacted('database_url', settings.database_url)}")
    print("  try: tagger results stills/still_00000.jpg   |   tagger export --format csv | head")
    print(f"demo finished in {seconds:.0f}s")
