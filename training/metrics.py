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
