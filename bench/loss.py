"""Binary cross-entropy against the asymmetric loss on the same generated stills and the same split, several
seeds: held-out mAP and cross-fitted calibrated F2 of each run, through the real recipe.

    python bench/loss.py [--count 600] [--seeds 0 1 2] [--arch mobilenet_v3_small] [--size 64] [--epochs 6]

Prints one JSON object: every run, and each loss's mean.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import small_model_options, train_small

from tagger.labels import read_labels_csv
from tagger.sample_archive import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    small_model_options(parser)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="tagger-loss-") as tmp:
        root = Path(tmp)
        generate(root, args.count, seed=0)  # one data set; the split is fixed by the labels, the seed moves the rest
        labelled = read_labels_csv(root / "labels.csv").under(root.as_uri())
        for seed in args.seeds:
            for loss in ("bce", "asl"):
                started = time.monotonic()
                args.seed = seed
                report, _ = train_small(root, labelled, args, "--loss", loss)
                runs.append(
                    {
                        "loss": loss,
                        "seed": seed,
                        "map": round(report.final["map"], 4),
                        "f2_calibrated": round(report.final["f2_calibrated"], 4),
                        "seconds": round(time.monotonic() - started, 1),
                    }
                )
    means = {
        loss: {k: round(statistics.mean(r[k] for r in runs if r["loss"] == loss), 4) for k in ("map", "f2_calibrated")}
        for loss in ("bce", "asl")
    }
    command = "python bench/loss.py " + " ".join(
        f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items() if k != "seed"
    )
    print(json.dumps({"command": command, "runs": runs, "mean": means}, indent=2))


if __name__ == "__main__":
    main()
