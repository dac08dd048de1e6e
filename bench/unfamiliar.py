"""How well the unfamiliarity score tells another visual domain from the one a model learned: AUROC of the
score between fresh stills (the training domain, never seen in training) and posters (`tagger sample
--out-of-domain`), for a small model trained here on generated stills through the real recipe.

    python bench/unfamiliar.py [--count 600] [--test 200] [--arch mobilenet_v3_small] [--size 64] [--epochs 6]

Prints one JSON object: the run, the AUROC, and the share of each set above the 99th percentile.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import small_model_options, train_small

from tagger.labels import read_labels_csv
from tagger.model import artifact
from tagger.model.familiarity import unfamiliarity
from tagger.model.predict import infer, prepare
from tagger.model.preprocess import Normalise, Preprocess
from tagger.sample_archive import generate, generate_posters
from tagger.storage import open_storage
from tagger.training.metrics import auroc


def scores(model: torch.nn.Module, meta: artifact.ArtifactMeta, files: list[Path]) -> np.ndarray:
    """Each file's unfamiliarity under `model`, scored as a worker scores (`infer`, then the percentile)."""
    preprocess, normalise = Preprocess(meta.input_size), Normalise(meta.mean, meta.std)
    served, dtype = prepare(model, torch.device("cpu"))
    pixels = torch.stack([preprocess(f.read_bytes()) for f in files])
    energy = torch.cat(
        [
            infer(served, b, normalise=normalise, device=torch.device("cpu"), dtype=dtype).energy
            for b in pixels.split(64)
        ]  # type: ignore[misc]
    )
    found = unfamiliarity(energy.numpy(), meta.energy_quantiles)
    assert found is not None
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600, help="generated stills to train (and hold out) on")
    parser.add_argument("--test", type=int, default=200, help="fresh stills and posters each, to score")
    small_model_options(parser)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tagger-unfamiliar-") as tmp:
        root = Path(tmp)
        generate(root / "train", args.count, seed=args.seed)
        generate(root / "fresh", args.test, seed=args.seed + 1000)
        generate_posters(root / "fresh", args.test, seed=args.seed)
        labelled = read_labels_csv(root / "train" / "labels.csv").under((root / "train").as_uri())
        report, candidate = train_small(root, labelled, args)
        assert candidate is not None
        model, meta = artifact.load(
            open_storage((root / "models").as_uri()),
            candidate.meta.version,
            expected_sha256=candidate.meta.weights_sha256,
        )
        stills = scores(model, meta, sorted((root / "fresh" / "stills").glob("*.jpg")))
        posters = scores(model, meta, sorted((root / "fresh" / "posters").glob("*.jpg")))
    labels = torch.cat([torch.zeros(len(stills)), torch.ones(len(posters))])
    result = {
        "command": "python bench/unfamiliar.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "train_images": report.train_images,
        "valid_images": report.valid_images,
        "map": round(report.final["map"], 4),
        "auroc_posters_vs_fresh_stills": round(auroc(torch.from_numpy(np.concatenate([stills, posters])), labels), 4),
        "fresh_stills_above_99": round(float((stills > 99).mean()), 4),
        "posters_above_99": round(float((posters > 99).mean()), 4),
        "median_unfamiliarity": {"fresh_stills": float(np.median(stills)), "posters": float(np.median(posters))},
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
