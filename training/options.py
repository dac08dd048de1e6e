"""Options of `tagger train`, kept free of torch imports so `tagger --help` stays fast.

Defaults follow fastai's `vision_learner(...).fine_tune(...)`: one frozen epoch for the new
head, then every layer with discriminative rates, one-cycle schedule, threshold 0.2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tagger.argtypes import float_between, int_between, positive_float, positive_int
from tagger.model.meta import MAX_INPUT_SIZE, MIN_INPUT_SIZE

LOSSES = ("bce", "asl")  # `tagger.training.loss.make_loss` builds each

# Every number is checked here, before any data is read or any model built: a run with a size no worker
# could load, or no epoch at all, must never register (let alone activate) a version.
_fraction = float_between(0.0, 1.0, open_low=True, open_high=True)


def get_args_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="tagger train", description="Train a multi-label tagging model.")
    data = p.add_argument_group("data")
    data.add_argument(
        "--labels",
        required=True,
        help="CSV of `image_id,tags` (tags space-separated), or `db` for the tags people confirmed in the database",
    )
    data.add_argument(
        "--images", default=None, help="folder or s3://bucket/prefix holding the images (default: TAGGER_STORAGE_URL)"
    )
    data.add_argument(
        "--valid-fraction",
        type=_fraction,
        default=0.2,
        help="share of images held out, chosen by the hash of each image's group (see --split)",
    )
    data.add_argument(
        "--split",
        choices=("groups", "key"),
        default="groups",
        help="groups (default): near-duplicates (by a perceptual fingerprint of each image) and --group-by keys "
        "stay on one side of the split; key: each key hashed alone, as before (near-duplicates leak across)",
    )
    data.add_argument(
        "--group-by",
        default=None,
        metavar="REGEX",
        help="keys this matches alike stay together: its first group (else the whole match) names the group, "
        "e.g. '^films/([^/]+)/' for a film's folder",
    )
    data.add_argument(
        "--group-embeddings",
        action="store_true",
        help="also join the near-duplicates the active model's stored embeddings find (at "
        "TAGGER_DUPLICATE_THRESHOLD): for a model that tells stills apart, not one trained on a few tags",
    )
    data.add_argument(
        "--show-leak",
        action="store_true",
        help="also report how many near-duplicate pairs the key-hash split would have put across the split",
    )
    data.add_argument(
        "--rare", type=int_between(0), default=5, help="report tags seen fewer than this many times (default 5)"
    )
    data.add_argument("--drop-rare", action="store_true", help="drop the rare tags from the vocabulary")

    model = p.add_argument_group("model")
    model.add_argument("--arch", default=None, help="torchvision classifier (default resnet50 on GPU, resnet18 on CPU)")
    model.add_argument(
        "--weights",
        default="imagenet",
        help="`imagenet` (torchvision weights API, needs network once) or a local .safetensors/.pth file",
    )
    model.add_argument("--random-init", action="store_true", help="start from random weights (much weaker; warns)")
    model.add_argument(
        "--size",
        type=int_between(MIN_INPUT_SIZE, MAX_INPUT_SIZE),
        default=224,
        help=f"square input size after squish resize, {MIN_INPUT_SIZE}-{MAX_INPUT_SIZE} (default 224)",
    )

    fit = p.add_argument_group("fit")
    fit.add_argument("--epochs", type=int_between(0), default=5, help="epochs with every layer trainable (default 5)")
    fit.add_argument(
        "--freeze-epochs",
        type=int_between(0),
        default=None,
        help="epochs training only the new head first (default 1 with pretrained weights; 0 with --random-init, "
        "whose body has nothing to keep)",
    )
    fit.add_argument("--batch-size", type=positive_int, default=32, help="images per optimisation step (default 32)")
    fit.add_argument(
        "--lr", type=positive_float, default=2e-3, help="peak learning rate of the head (fastai default 2e-3)"
    )
    fit.add_argument(
        "--lr-spread", type=float_between(1.0, float("inf")), default=100.0, help="the first layers train at lr/spread"
    )
    fit.add_argument(
        "--weight-decay", type=float_between(0.0, float("inf")), default=1e-2, help="AdamW weight decay (default 0.01)"
    )
    fit.add_argument(
        "--patience",
        type=int_between(0),
        default=3,
        help="stop after this many epochs without a lower valid loss (0: never stop early)",
    )
    fit.add_argument(
        "--max-rotate", type=float_between(0.0, 180.0), default=10.0, help="augmentation: rotation in degrees (0 = off)"
    )
    fit.add_argument(
        "--max-zoom", type=float_between(1.0, float("inf")), default=1.1, help="augmentation: zoom factor (1 = off)"
    )
    fit.add_argument(
        "--max-lighting",
        type=float_between(0.0, 1.0, open_high=True),
        default=0.2,
        help="augmentation: brightness/contrast change",
    )
    fit.add_argument("--seed", type=int, default=0, help="seeds the weights, the shuffling and the augmentation")
    fit.add_argument(
        "--loss",
        choices=LOSSES,
        default="bce",
        help="bce: binary cross-entropy (the default until asl is measured to beat it: bench/loss.py, BENCHMARKS.md); "
        "asl: the asymmetric loss, which down-weights easy negatives",
    )
    fit.add_argument("--asl-gamma-neg", type=float_between(0.0, 10.0), default=4.0, help="ASL: negatives' focusing (4)")
    fit.add_argument("--asl-gamma-pos", type=float_between(0.0, 10.0), default=0.0, help="ASL: positives' focusing (0)")
    fit.add_argument(
        "--asl-clip", type=float_between(0.0, 0.5), default=0.05, help="ASL: negatives' probability shift (0.05)"
    )
    fit.add_argument(
        "--folds",
        type=int_between(2, 20),
        default=None,
        metavar="K",
        help="also train K models, each on all training images but one fold, to score every training image with a "
        "model that never saw it: the labels most likely wrong are then looked for among all labelled images, not "
        "only the held-out ones (`tagger labels suspects`); costs K more trainings",
    )
    fit.add_argument("--checkpoint", type=Path, default=None, help="checkpoint folder (default VAR/train/checkpoint)")
    fit.add_argument("--resume", action="store_true", help="continue from the checkpoint of an interrupted run")
    fit.add_argument("--find-lr", action="store_true", help="run the learning-rate range test, save its plot, stop")
    fit.add_argument("--plots", type=Path, default=None, help="where to write PNG plots (default VAR/train)")

    out = p.add_argument_group("evaluation and promotion")
    out.add_argument(
        "--threshold",
        type=_fraction,
        default=0.2,
        help="the fixed threshold F2 and accuracy are reported at, and where the fitted global threshold starts "
        "(it must beat it strictly; default 0.2, as fastai)",
    )
    out.add_argument("--no-calibrate", action="store_true", help="serve --threshold for every tag: fit no thresholds")
    out.add_argument(
        "--gate-margin",
        type=float_between(-1.0, 1.0),
        default=0.0,
        help="promote only if F2 >= active model's F2 - margin on the same held-out images (default 0)",
    )
    out.add_argument("--force", action="store_true", help="activate even if the promotion gate says no")
    out.add_argument("--no-activate", action="store_true", help="register as a candidate only")
    out.add_argument("--retag-stale", action="store_true", help="after a promotion, queue a bulk job for stale images")
    out.add_argument("--json", action="store_true", help="print the final report as JSON")
    return p
