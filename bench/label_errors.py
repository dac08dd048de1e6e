"""How many deliberately flipped labels the label-error ranking finds: generated stills with a share of their
labels flipped (`tagger sample --wrong-labels`), `tagger train --folds K` through the real recipe, then the
share of the flipped (image, tag) labels among the top tenth of the ranking (as many pairs as a tenth of the
images), over every labelled image (training images out-of-fold, held-out ones by the final model).

    python bench/label_errors.py [--count 600] [--wrong 0.05] [--folds 4] [--arch mobilenet_v3_small] [--size 64]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import small_model_options, train_small

from tagger.labels import read_labels_csv
from tagger.sample_archive import flip_labels, generate, write_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--wrong", type=float, default=0.05)
    parser.add_argument("--folds", type=int, default=4)
    small_model_options(parser)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tagger-label-errors-") as tmp:
        root = Path(tmp)
        stills = generate(root, args.count, seed=args.seed)
        labelled_stills, flips = flip_labels(stills, args.wrong, seed=args.seed)
        write_labels(root / "labels.csv", labelled_stills)
        labelled = read_labels_csv(root / "labels.csv").under(root.as_uri())
        report, candidate = train_small(root, labelled, args, "--folds", str(args.folds))
        assert candidate is not None
    ranked = candidate.meta.training["label_suspects"]
    top = {(s["key"], s["tag"]) for s in ranked[: args.count // 10]}
    found = sum((f.key, f.tag) in top for f in flips)
    print(
        json.dumps(
            {
                "command": "python bench/label_errors.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
                "images": args.count,
                "flipped": len(flips),
                "map": round(report.final["map"], 4),
                "flipped_in_top_tenth": round(found / max(1, len(flips)), 4),
                "confident_suspects": sum(bool(s["confident"]) for s in ranked),
                "seconds": round(time.monotonic() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
