"""Score a model on held-out stills through the same `predict` the workers serve with, and measure it."""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tagger.labels import LabelledSet
from tagger.model.meta import ArtifactMeta
from tagger.model.predict import infer, prepare
from tagger.model.preprocess import Normalise
from tagger.training.calibrate import Calibration, calibrate
from tagger.training.data import DecodedStills
from tagger.training.metrics import (
    accuracy_multi,
    average_precision,
    fbeta_samples,
    mean_average_precision,
    per_tag_precision_recall,
)

CHUNK = 128  # images per forward pass while scoring
HIGHEST_LOSSES = 100  # held-out images kept per version for the review page, worst first
WORST_TAGS = 5  # per kept image: the tags where the model and the label disagree most


@dataclass(frozen=True)
class Candidate:
    """A trained model saved as an artifact, with the held-out stills the promotion gate judges it on."""

    meta: ArtifactMeta
    uri: str  # where the artifact was saved: <model store>/<version>
    valid_set: LabelledSet
    valid: DecodedStills
    probs: torch.Tensor  # the served model's probabilities on `valid`, N x tags


def bce(probs: torch.Tensor, targets: torch.Tensor) -> float:
    return float(nn.functional.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), targets))


def image_losses(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each image's binary cross-entropy, averaged over its tags: N x tags -> N (nats)."""
    clamped = probs.clamp(1e-7, 1 - 1e-7)
    return nn.functional.binary_cross_entropy(clamped, targets, reduction="none").mean(dim=1)


def highest_losses(
    probs: torch.Tensor,
    targets: torch.Tensor,
    vocabulary: list[str],
    images: list[tuple[str, str]],
    *,
    count: int = HIGHEST_LOSSES,
) -> list[dict[str, Any]]:
    """The held-out images the model gets most wrong, worst first: where a person's look helps most
    (a wrong label, or a still the model cannot read yet). fastai's `plot_top_losses`, kept as data.

    `images` holds each row's (storage URL, key). Each entry: storage, key, loss (mean BCE over tags,
    nats), the labelled tags, and the `WORST_TAGS` tags with the largest |probability - label|.
    """
    if len(images) != len(probs):
        raise ValueError(f"{len(images)} images for {len(probs)} rows of probabilities")
    losses = image_losses(probs, targets)
    order = torch.argsort(losses, descending=True)[:count]
    errors = (probs - targets).abs()
    out = []
    for row in order.tolist():
        worst = torch.argsort(errors[row], descending=True)[:WORST_TAGS].tolist()
        storage, key = images[row]
        out.append(
            {
                "storage": storage,
                "key": key,
                "loss": round(float(losses[row]), 5),
                "tags": [vocabulary[i] for i in torch.nonzero(targets[row]).flatten().tolist()],
                "worst": [
                    {
                        "tag": vocabulary[i],
                        "probability": round(float(probs[row, i]), 4),
                        "labelled": bool(targets[row, i]),
                    }
                    for i in worst
                ],
            }
        )
    return out


def predict_all(
    model: nn.Module, data: DecodedStills, device: torch.device, normalise: Normalise, *, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N x tags probabilities, N x tags targets, N JointEnergy scores) of `data`, scored by
    `tagger.model.predict.infer`, as the workers score."""
    model.eval()
    outs = [
        infer(model, data.pixels[start : start + CHUNK], normalise=normalise, device=device, dtype=dtype)
        for start in range(0, len(data), CHUNK)
    ]
    energy = torch.cat([o.energy for o in outs if o.energy is not None])
    return torch.cat([o.probs for o in outs]), data.targets, energy


def predict_served(
    model: nn.Module, data: DecodedStills, device: torch.device, normalise: Normalise
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score a copy of a training model prepared exactly as a worker serves it (channels_last, bf16 on CUDA)."""
    served, dtype = prepare(copy.deepcopy(model), device)
    return predict_all(served, data, device, normalise, dtype=dtype)


def evaluate(
    probs: torch.Tensor, targets: torch.Tensor, vocabulary: list[str], args: argparse.Namespace
) -> tuple[dict[str, Any], Calibration]:
    """Final metrics: at the given global threshold, and with the thresholds fitted on the held-out images
    (`calibrate`), whose figures are all cross-fitted: none is scored on the images it was fitted on."""
    fitted = calibrate(probs, targets, vocabulary, default=args.threshold, fit=not args.no_calibrate)
    precision, recall, support = per_tag_precision_recall(fitted.predictions, targets, 0.5)
    ap = average_precision(probs, targets)
    final = {
        "f2": fbeta_samples(probs, targets, args.threshold),
        "f2_calibrated": fitted.f2,
        "calibration": fitted.report(),
        "accuracy": accuracy_multi(probs, targets, args.threshold),
        "map": mean_average_precision(probs, targets),
        "valid_loss": bce(probs, targets),
        "per_tag": {
            tag: {
                "precision": round(float(p), 4),
                "recall": round(float(r), 4),
                "ap": None if torch.isnan(a) else round(float(a), 4),
                "support": int(s),
                "threshold": fitted.tag_thresholds.get(tag, fitted.threshold),
            }
            for tag, p, r, a, s in zip(vocabulary, precision, recall, ap, support, strict=True)
        },
    }
    return final, fitted
