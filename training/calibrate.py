"""Per-tag thresholds calibrated on the validation split to maximise samples-averaged F2.

Coordinate ascent from the global threshold: each tag in turn takes the grid value that
maximises F2 of the whole split with the others held fixed, so the result is never worse
than the global threshold on the split it was fitted on. Thresholds stay within bounds,
and tags with too few positives keep the global value (too little evidence to move it).
"""

from __future__ import annotations

import torch

from tagger.training.metrics import fbeta_samples

GRID = tuple(round(0.05 * i, 2) for i in range(1, 13))  # 0.05 .. 0.60


def calibrate(
    probs: torch.Tensor,
    targets: torch.Tensor,
    tags: list[str],
    *,
    default: float = 0.2,
    min_positives: int = 10,
    rounds: int = 2,
    grid: tuple[float, ...] = GRID,
) -> dict[str, float]:
    thresholds = torch.full((len(tags),), default)
    best = fbeta_samples(probs, targets, thresholds)
    movable = [i for i in range(len(tags)) if int(targets[:, i].sum()) >= min_positives]
    for _ in range(rounds):
        improved = False
        for i in movable:
            for value in grid:
                trial = thresholds.clone()
                trial[i] = value
                score = fbeta_samples(probs, targets, trial)
                if score > best + 1e-9:
                    best, thresholds, improved = score, trial, True
        if not improved:
            break
    tuned = {tags[i]: round(float(thresholds[i]), 2) for i in movable}
    return {tag: value for tag, value in tuned.items() if value != round(default, 2)}
