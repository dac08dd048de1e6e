"""Multi-label metrics, as fastai reports them: accuracy at a threshold and samples-averaged F-beta."""

from __future__ import annotations

import torch

EPS = 1e-9


def accuracy_multi(probs: torch.Tensor, targets: torch.Tensor, threshold: float | torch.Tensor = 0.2) -> float:
    return float(((probs >= threshold).float() == targets).float().mean())


def fbeta_samples(
    probs: torch.Tensor, targets: torch.Tensor, threshold: float | torch.Tensor = 0.2, beta: float = 2.0
) -> float:
    """F-beta per image, averaged over images (fastai's `fbeta(..., sample_wise=True)`)."""
    pred = (probs >= threshold).float()
    tp = (pred * targets).sum(1)
    precision = tp / (pred.sum(1) + EPS)
    recall = tp / (targets.sum(1) + EPS)
    b2 = beta * beta
    score = (1 + b2) * precision * recall / (b2 * precision + recall + EPS)
    return float(score.mean())


def per_tag_precision_recall(
    probs: torch.Tensor, targets: torch.Tensor, threshold: float | torch.Tensor = 0.2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(precision, recall, support) per tag."""
    pred = (probs >= threshold).float()
    tp = (pred * targets).sum(0)
    precision = tp / pred.sum(0).clamp(min=EPS)
    recall = tp / targets.sum(0).clamp(min=EPS)
    return precision, recall, targets.sum(0)


def average_precision(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Average precision per tag (area under the precision-recall steps); NaN for a tag with no positives."""
    order = probs.argsort(dim=0, descending=True)
    hits = targets.gather(0, order)
    ranks = torch.arange(1, probs.shape[0] + 1, dtype=probs.dtype).unsqueeze(1)
    precision_at = hits.cumsum(0) / ranks
    positives = hits.sum(0)
    ap = (precision_at * hits).sum(0) / positives.clamp(min=1)
    return torch.where(positives > 0, ap, torch.nan)


def mean_average_precision(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """mAP over the tags that have at least one positive in `targets`."""
    ap = average_precision(probs, targets)
    return float(ap[~ap.isnan()].mean()) if (~ap.isnan()).any() else 0.0


def auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve: the chance a random positive scores above a random negative (ties count half),
    by the Mann-Whitney rank sum."""
    pos = positive.bool()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both positives and negatives")
    order = scores.double().argsort()
    ranks = torch.empty_like(order, dtype=torch.float64)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    for value in scores.unique():  # average ranks over ties
        tied = scores == value
        if int(tied.sum()) > 1:
            ranks[tied] = ranks[tied].mean()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
