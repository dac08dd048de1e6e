"""Labels most likely wrong, found by confident learning on out-of-sample probabilities.

Confident learning (Northcutt, Jiang and Chuang, JAIR 2021), reimplemented here for multi-label data (the
reference implementation, Cleanlab, is AGPL-3.0 and no dependency of tagger): each tag is a binary task.
Per tag, the model's average confidence in each label value among the images carrying it is that value's
threshold; an (image, tag) label is *confidently the other way* when the model's confidence in the other
value reaches the other value's threshold and exceeds its confidence in the given one. Those pairs are the
suspects, ranked by the margin (confidence in the other value minus in the given one, normalised by the
thresholds), then the rest by self-confidence, lowest first.

The probabilities must come from models that did not train on the image (`tagger train --folds K`: each
training image scored by a model trained on the other folds; held-out images by the final model), or the
model has memorised the very labels it should doubt.
"""

from __future__ import annotations

from typing import Any

import torch

SUSPECTS_KEPT = 500  # (image, tag) pairs the artifact keeps for the review queue, most suspect first


def rank(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (image, tag) pair, most likely mislabelled first: (rows, cols, score), score in [-1, 1], higher is
    more suspect; positive scores are the confident-learning suspects."""
    labels = labels.bool()
    p = probs.double().clamp(0, 1)
    given = torch.where(labels, p, 1 - p)  # self-confidence: the model's confidence in the label as given
    other = 1 - given
    positives, negatives = labels.sum(0).clamp(min=1), (~labels).sum(0).clamp(min=1)
    t_yes = (p * labels).sum(0) / positives  # per tag: mean P(tag) over the images labelled with it
    t_no = ((1 - p) * ~labels).sum(0) / negatives  # mean P(not tag) over the images labelled without it
    t_given = torch.where(labels, t_yes.expand_as(p), t_no.expand_as(p))
    t_other = torch.where(labels, t_no.expand_as(p), t_yes.expand_as(p))
    confident_other = (other >= t_other) & (other / t_other.clamp(min=1e-9) > given / t_given.clamp(min=1e-9))
    margin = other / t_other.clamp(min=1e-9) - given / t_given.clamp(min=1e-9)
    # Suspects by normalised margin (squashed into (0, 1]), then everything else by self-confidence in (-1, 0].
    score = torch.where(confident_other, torch.tanh(margin).clamp(min=1e-6), -given)
    flat = score.flatten()
    order = torch.argsort(flat, descending=True, stable=True)
    cols = probs.shape[1]
    return order // cols, order % cols, flat[order]


def suspects(
    probs: torch.Tensor,
    labels: torch.Tensor,
    vocabulary: list[str],
    images: list[tuple[str, str]],
    *,
    count: int = SUSPECTS_KEPT,
) -> list[dict[str, Any]]:
    """The `count` labels most likely wrong, as the artifact keeps them: storage, key, tag, whether it is
    labelled, the out-of-sample probability, the score, and whether confident learning flags it (score > 0;
    after those come the least self-confident labels)."""
    if len(images) != len(probs):
        raise ValueError(f"{len(images)} images for {len(probs)} rows of probabilities")
    rows, cols, scores = rank(probs, labels)
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
                "confident": score > 0,
            }
        )
    return out
