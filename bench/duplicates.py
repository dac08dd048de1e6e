"""The duplicate threshold, chosen by measurement (issue 29): precision and recall of near-duplicate pairs
on a generated archive with known groups, at several thresholds.

The archive is `tagger sample --count SINGLES --bursts SHOTS` (single stills, and shots of 3-9 near-identical
stills: consecutive frames, re-encodes, resizes, crops, colour grades, burned-in subtitles), its true groups
in groups.csv. Every still is embedded as a worker embeds it (the active model loaded by `Embedder`, the
same preprocessing and `infer`), by a model trained here from random weights on the archive's own labels
(`tagger train --random-init`; no ImageNet weights offline) or, with --model random, an untrained one.
The groups are what `tagger duplicates` computes on SQLite: every pair at or above the threshold (exact),
then connected components. A pair counts as found when both stills land in one group; precision is the
share of found pairs that are true, recall the share of true pairs found (as the issue's "Done when").

  .venv/bin/python bench/duplicates.py                          # about 3 minutes on 2 cores
  .venv/bin/python bench/duplicates.py --model random --thresholds 0.9,0.95,0.98
"""

from __future__ import annotations

import argparse
import itertools
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
    p.add_argument("--singles", type=int, default=300, help="single stills (each its own group)")
    p.add_argument("--shots", type=int, default=120, help="shots of near-identical stills")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--model", choices=("trained", "random"), default="trained")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=64, help="the model's input size")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument(
        "--thresholds", default="0.80,0.85,0.88,0.90,0.92,0.94,0.95,0.96,0.97,0.98,0.99", help="comma-separated"
    )
    return p.parse_args()


def true_pairs(groups: dict[str, str]) -> set[tuple[str, str]]:
    by_group: dict[str, list[str]] = {}
    for key, group in groups.items():
        by_group.setdefault(group, []).append(key)
    return {tuple(sorted(p)) for keys in by_group.values() for p in itertools.combinations(keys, 2)}  # type: ignore[misc]


def found_pairs(keys: list[str], vectors: Any, threshold: float) -> set[tuple[str, str]]:
    """The pairs `tagger duplicates` puts in one group: exact pairs at or above `threshold`, then components."""
    import numpy as np

    from tagger.duplicates import connected_groups

    scores = vectors @ vectors.T
    rows, cols = np.nonzero(np.triu(scores >= threshold, k=1))
    groups = connected_groups((int(r), int(c), float(scores[r, c])) for r, c in zip(rows, cols, strict=True))
    return {tuple(sorted((keys[a], keys[b]))) for ids, _ in groups for a, b in itertools.combinations(ids, 2)}  # type: ignore[misc]


def main() -> None:
    args = parse_args()
    import numpy as np

    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.sample_archive import read_groups
    from tagger.settings import Settings
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
        )
        groups = read_groups(root / "groups.csv")
        settings = Settings.from_env({"TAGGER_VAR_DIR": str(var)})
        engine = make_engine(settings.database_url)
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        started = time.monotonic()
        if args.model == "trained":
            subprocess.run(
                [*tagger, "train", "--labels", str(root / "labels.csv"), "--images", str(root), "--random-init"]
                + ["--arch", args.arch, "--size", str(args.size), "--epochs", str(args.epochs)],
                env=env,
                check=True,
            )
        else:
            from tests.conftest import make_model

            make_model(settings, sessions, arch=args.arch, size=args.size)
        trained = time.monotonic() - started
        import torch

        model = Embedder(sessions).current()
        keys = sorted(groups)
        vectors = []
        for start in range(0, len(keys), 64):
            batch = torch.stack([model.preprocess((root / k).read_bytes()) for k in keys[start : start + 64]])
            vectors.append(model.infer(batch).embeddings.float().numpy())  # type: ignore[union-attr]
        matrix = np.concatenate(vectors)
        truth = true_pairs(groups)
        shots = len({g for g in groups.values() if g.startswith("shot_")})
        print(
            f"{len(keys)} stills ({args.singles} single, {shots} shots), {len(truth)} true near-duplicate pairs; "
            f"model: {args.model} {args.arch} at {args.size}px"
            + (f", {args.epochs} epochs from random weights ({trained:.0f} s)" if args.model == "trained" else "")
        )
        same = np.array([groups[a] == groups[b] for a, b in itertools.combinations(keys, 2)])
        scores = (matrix @ matrix.T)[np.triu_indices(len(keys), k=1)]
        print(
            f"similarity of true pairs: min {scores[same].min():.3f}, 5th percentile "
            f"{np.percentile(scores[same], 5):.3f}; other pairs: max {scores[~same].max():.3f}, 99.9th "
            f"percentile {np.percentile(scores[~same], 99.9):.3f}"
        )
        print(f"{'threshold':>9} {'precision':>9} {'recall':>7} {'groups':>6}")
        for threshold in (float(t) for t in args.thresholds.split(",")):
            found = found_pairs(keys, matrix, threshold)
            hit = len(found & truth)
            precision = hit / len(found) if found else 1.0
            from tagger.duplicates import connected_groups

            rows, cols = np.nonzero(np.triu(matrix @ matrix.T >= threshold, k=1))
            count = len(connected_groups((int(r), int(c), 1.0) for r, c in zip(rows, cols, strict=True)))
            print(f"{threshold:9.2f} {precision:9.3f} {hit / len(truth):7.3f} {count:6d}")
        engine.dispose()


if __name__ == "__main__":
    main()
