"""The training loss: binary cross-entropy, or the asymmetric loss (ASL) of Ridnik et al., ICCV 2021.

ASL down-weights the many easy negatives of a multi-label set (most tags are absent from most stills): the
negatives' probabilities are shifted down by `clip` (a negative below it costs nothing) and their loss scaled
by p^gamma_neg, the positives' by (1 - p)^gamma_pos. With gamma_neg = gamma_pos = clip = 0 it is binary
cross-entropy. The paper sums over the batch; this averages over every (image, tag) element, as
`BCEWithLogitsLoss` does, so the learning rates tuned for BCE keep their scale. Whether it helps is a matter
of measurement on the data at hand (`bench/loss.py`, BENCHMARKS.md); `tagger train --loss` picks, and BCE stays
the default until a measurement says otherwise.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


class AsymmetricLoss(nn.Module):
    """ASL on logits: mean over elements of -[y (1-p)^gp log p + (1-y) p_m^gn log(1 - p_m)], p_m = max(p - clip, 0)."""

    def __init__(self, *, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05, eps: float = 1e-8):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        p_neg = (p - self.clip).clamp(min=0) if self.clip > 0 else p  # the shifted probability of a negative
        loss_pos = targets * torch.log(p.clamp(min=self.eps)) * (1 - p).pow(self.gamma_pos)
        loss_neg = (1 - targets) * torch.log((1 - p_neg).clamp(min=self.eps)) * p_neg.pow(self.gamma_neg)
        return -(loss_pos + loss_neg).mean()


def make_loss(args: argparse.Namespace) -> nn.Module:
    """The loss `tagger train --loss` names, with its options."""
    if getattr(args, "loss", "bce") == "asl":
        return AsymmetricLoss(gamma_neg=args.asl_gamma_neg, gamma_pos=args.asl_gamma_pos, clip=args.asl_clip)
    return nn.BCEWithLogitsLoss()
