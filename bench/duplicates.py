"""Duplicates and the held-out split, measured on a generated archive with known groups (issue 29).

The archive is `tagger sample --count SINGLES --bursts SHOTS` (single stills, and shots of 3-9 near-identical
stills: consecutive frames, re-encodes, resizes, crops, colour grades, burned-in subtitles), its true groups
in groups.csv. In one run:

1. the split: `tagger train` twice on the same archive, split by group (`--show-leak`) and by key hash
   (`--split key`): the known near-duplicate pairs (groups.csv) each split puts across, the pairs it found
   (fingerprints: no model has embedded the archive yet) and the held-out F2 of each; and the known pairs
   a group split with `--group-by '^films/([^/]+)/'` puts across (no training: the split is a function);
2. the duplicate threshold: every still embedded as a worker embeds it (the model the group-split run
   trained from random weights on the archive's own labels, offline: no ImageNet weights), grouped as
   `tagger duplicates` groups them on SQLite (exact pairs at or above the threshold, then connected
   components), and the training split's fingerprints grouped the same way. A pair counts as found when
   both stills land in one group; precision is the share of found pairs that are true, recall the share of
   true pairs found (the issue's "Done when").

  .venv/bin/python bench/duplicates.py                  # about 10 minutes on 2 cores
  .venv/bin/python bench/duplicates.py --model random   # an untrained model's embeddings instead, no training
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--singles", type=int, default=200, help="single stills (each its own group)")
    p.add_argument("--shots", type=int, default=80, help="shots of near-identical stills")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--model", choices=("trained", "random"), default="trained")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=64, help="the model's input size")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--thresholds", default="0.80,0.85,0.90,0.92,0.94,0.95,0.96,0.97,0.98,0.99", help="comma-separated")
    return p.parse_args()


def true_pairs(groups: dict[str, str]) -> set[tuple[str, str]]:
    by_group: dict[str, list[str]] = {}
    for key, group in groups.items():
        by_group.setdefault(group, []).append(key)
    return {tuple(sorted(p)) for keys in by_group.values() for p in itertools.combinations(keys, 2)}  # type: ignore[misc]


def pair_scores(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[float, float]:
    hit = len(found & truth)
    return (hit / len(found) if found else 1.0), hit / len(truth)


def grouped_pairs(keys: list[str], vectors: Any, threshold: float) -> set[tuple[str, str]]:
    """The pairs `tagger duplicates` puts in one group: exact pairs at or above `threshold`, then components."""
    from tagger.db.vectors import exact_pairs
    from tagger.duplicates import connected_groups

    groups = connected_groups(exact_pairs(vectors, threshold))
    return {tuple(sorted((keys[a], keys[b]))) for ids, _ in groups for a, b in itertools.combinations(ids, 2)}  # type: ignore[misc]


def train(tagger: list[str], env: dict[str, str], root: Path, args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    """One `tagger train` run's --json report."""
    out = subprocess.run(
        [*tagger, "train", "--labels", str(root / "labels.csv"), "--images", str(root), "--random-init", "--json"]
        + ["--arch", args.arch, "--size", str(args.size), "--epochs", str(args.epochs), *extra],
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return json.loads(out.stdout)


def held_out(root: Path, args: argparse.Namespace, **split: Any) -> list[str]:
    """The keys `tagger train` holds out (the split is a deterministic function of the labels and images)."""
    from tagger.labels import read_labels_csv
    from tagger.training.groups import group_labelled

    labelled = read_labels_csv(root / "labels.csv").under(root.resolve().as_uri())
    by_key = split.pop("by_key", False)
    near = group_labelled(labelled, sessions=None, threshold=1.0, **split)
    return near.labelled.split(0.2, by_key=by_key)[1].keys


def main() -> None:
    args = parse_args()
    import numpy as np
    import torch

    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.labels import read_labels_csv
    from tagger.sample_archive import read_groups
    from tagger.settings import Settings
    from tagger.training.groups import crossing, fingerprints
    from tagger.uploads import Embedder

    with tempfile.TemporaryDirectory(prefix="bench-duplicates-") as tmp:
        root, var = Path(tmp) / "archive", Path(tmp) / "var"
        env = {**os.environ, "TAGGER_VAR_DIR": str(var), "PYTHONPATH": os.getcwd()}
        tagger = [sys.executable, "-m", "tagger"]
        subprocess.run(
            [*tagger, "sample", str(root), "--count", str(args.singles), "--bursts", str(args.shots)]
            + ["--seed", str(args.seed)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        groups = read_groups(root / "groups.csv")
        truth = true_pairs(groups)
        shots = len({g for g in groups.values() if g.startswith("shot_")})
        print(f"{len(groups)} stills ({args.singles} single, {shots} shots), {len(truth)} true near-duplicate pairs")
        settings = Settings.from_env({"TAGGER_VAR_DIR": str(var)})
        engine = make_engine(settings.database_url)
        upgrade(engine)
        sessions = make_sessionmaker(engine)

        if args.model == "trained":
            print(f"\nthe split ({args.arch} at {args.size}px, {args.epochs} epochs from random weights):")
            print(f"{'split':<34} {'known pairs across':>18} {'found pairs across':>18} {'held-out F2':>11}")
            started = time.monotonic()
            runs = {"group (default)": train(tagger, env, root, args, "--show-leak")}
            trained = time.monotonic() - started
            runs["key hash (--split key)"] = train(tagger, env, root, args, "--split", "key", "--no-activate")
            for name, report in runs.items():
                valid = held_out(root, args, by_key="key" in name)
                found = f"{report['split']['pairs_crossing']} of {report['split']['near_duplicate_pairs']}"
                print(f"{name:<34} {crossing(sorted(truth), valid):>18} {found:>18} {report['final']['f2']:>11.4f}")
            films = held_out(root, args, group_by=r"^films/([^/]+)/")
            print(f"{'group, --group-by the film folder':<34} {crossing(sorted(truth), films):>18}")
            print(f"(training: {trained:.0f} s a run)")
        else:
            from tests.conftest import make_model

            make_model(settings, sessions, arch=args.arch, size=args.size)

        model = Embedder(sessions).current()
        keys = sorted(groups)
        vectors = []
        for start in range(0, len(keys), 64):
            batch = torch.stack([model.preprocess((root / k).read_bytes()) for k in keys[start : start + 64]])
            vectors.append(model.infer(batch).embeddings.float().numpy())  # type: ignore[union-attr]
        matrix = np.concatenate(vectors)
        labelled = read_labels_csv(root / "labels.csv").under(root.resolve().as_uri())
        prints = fingerprints(labelled)
        prints = prints[np.argsort(np.array(labelled.keys))]  # in the order of `keys`
        for name, space in ((f"embeddings ({args.model} {args.arch})", matrix), ("fingerprints (16x16)", prints)):
            same = np.array([groups[a] == groups[b] for a, b in itertools.combinations(keys, 2)])
            scores = (space @ space.T)[np.triu_indices(len(keys), k=1)]
            true_5, true_50 = np.percentile(scores[same], 5), np.median(scores[same])
            print(
                f"\n{name}: similarity of true pairs: 5th percentile {true_5:.3f}, median {true_50:.3f}; "
                f"other pairs: 99.9th percentile {np.percentile(scores[~same], 99.9):.3f}"
            )
            print(f"{'threshold':>9} {'precision':>9} {'recall':>7}")
            for threshold in (float(t) for t in args.thresholds.split(",")):
                precision, recall = pair_scores(grouped_pairs(keys, space, threshold), truth)
                print(f"{threshold:9.2f} {precision:9.3f} {recall:7.3f}")
        engine.dispose()


if __name__ == "__main__":
    main()
