"""Labels most likely wrong, found by confident learning on out-of-sample probabilities.

Confident learning (Northcutt, Jiang and Chuang, JAIR 2021), reimplemented here for multi-label data (the
reference implementation, Cleanlab, is AGPL-3.0 and no dependency of tagger): each tag is a binary task.
Per tag, the model's average confidence in each label value among the images carrying it is that value's
threshold; an (image, tag) label is *confidently the other way* when the model's confidence in the other
value reaches the other value's threshold and its confidence in the given one does not also reach its own
and beat it (`confident`). The ranking (`rank`) is the margin (confidence in the other value minus in the
given one) weighted by how well the model separates the tag at all, so that a tag it has not learnt cannot
fill the top of the queue.

The probabilities must come from models that did not train on the image (`tagger train --folds K`: each
training image scored by a model trained on the other folds; held-out images by the final model), or the
model has memorised the very labels it should doubt.
"""

from __future__ import annotations

from typing import Any

import torch

SUSPECTS_KEPT = 500  # (image, tag) pairs the artifact keeps for the review queue, most suspect first


def _confidences(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(given, t_yes, t_no): N x tags self-confidence (the model's confidence in each label as given), and per
    tag the thresholds: mean P(tag) over the images labelled with it, mean P(not tag) over the others."""
    yes = labels.bool()
    p = probs.double().clamp(0, 1)
    t_yes = (p * yes).sum(0) / yes.sum(0).clamp(min=1)
    t_no = ((1 - p) * ~yes).sum(0) / (~yes).sum(0).clamp(min=1)
    return torch.where(yes, p, 1 - p), t_yes, t_no


def rank(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (image, tag) pair, most likely mislabelled first: (rows, cols, score), score in [-1, 1], higher is
    more suspect: the model's confidence in the other value minus in the given one, times the tag's separation
    (the two thresholds' sum less one: 0 where the model cannot tell the tag apart, 1 where it always can).
    Without the separation, a tag the model has not learnt floods the top with its every label."""
    given, t_yes, t_no = _confidences(probs, labels)
    score = ((1 - given) - given) * (t_yes + t_no - 1).clamp(min=0)
    flat = score.flatten()
    order = torch.argsort(flat, descending=True, stable=True)
    cols = probs.shape[1]
    return order // cols, order % cols, flat[order]


def confident(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """N x tags: the labels confident learning calls wrong: the model's confidence in the other value reaches
    that value's threshold, and the given value's does not also reach its own and beat it."""
    given, t_yes, t_no = _confidences(probs, labels)
    yes = labels.bool()
    t_given, t_other = torch.where(yes, t_yes, t_no), torch.where(yes, t_no, t_yes)
    other = 1 - given
    return (other >= t_other) & ~((given >= t_given) & (given >= other))


def suspects(
    probs: torch.Tensor,
    labels: torch.Tensor,
    vocabulary: list[str],
    images: list[tuple[str, str]],
    *,
    count: int = SUSPECTS_KEPT,
) -> list[dict[str, Any]]:
    """The `count` labels most likely wrong, as the artifact keeps them: storage, key, tag, whether it is
    labelled, the out-of-sample probability, the score, and whether confident learning flags it."""
    if len(images) != len(probs):
        raise ValueError(f"{len(images)} images for {len(probs)} rows of probabilities")
    rows, cols, scores = rank(probs, labels)
    flagged = confident(probs, labels)
    out: list[dict[str, Any]] = []
    for row, col, score in zip(rows.tolist(), cols.tolist(), scores.tolist(), strict=True):
        if len(out) >= count:
            break
        storage, key = images[row]
        out.append(
            {
                "storage": storage,
                "key": key,
                "tag": vocabulary[col],
                "labelled": bool(labels[row, col]),
                "probability": round(float(probs[row, col]), 4),
                "score": round(score, 4),
                "confident": bool(flagged[row, col]),
            }
        )
    return out
