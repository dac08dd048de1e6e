"""The learning-rate range test (Smith 2015, as fastai's `lr_find`).

Train for a few dozen steps while the learning rate grows exponentially; stop when the
loss explodes; suggest the rate where the smoothed loss falls fastest. The model is
restored afterwards, so the finder leaves no trace on the run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn


def lr_find(
    model: nn.Module,
    batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]],
    loss_step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    weight_decay: float = 1e-2,
) -> tuple[list[float], list[float], float]:
    """Returns (learning rates, smoothed losses, suggested rate)."""
    saved = copy.deepcopy(model.state_dict())
    optimiser = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=start, weight_decay=weight_decay
    )
    factor = (end / start) ** (1 / max(1, steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    avg, best = 0.0, math.inf
    model.train()
    step = 0
    while step < steps:
        for x, y in batches():
            lr = start * factor**step
            for group in optimiser.param_groups:
                group["lr"] = lr
            loss = loss_step(x, y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            avg = 0.98 * avg + 0.02 * float(loss.detach())
            smoothed = avg / (1 - 0.98 ** (step + 1))
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            step += 1
            if step >= steps or smoothed > 4 * best or not math.isfinite(smoothed):
                step = steps
                break
    model.load_state_dict(saved)
    return lrs, losses, suggest(lrs, losses)


def suggest(lrs: list[float], losses: list[float]) -> float:
    """The rate of steepest descent of the loss, ignoring the noisy first and exploding last steps."""
    if len(lrs) < 5:
        return lrs[len(lrs) // 2] if lrs else 1e-3
    lo, hi = max(1, len(lrs) // 10), max(2, len(lrs) - len(lrs) // 10)
    slopes = [(losses[i + 1] - losses[i - 1]) / math.log(lrs[i + 1] / lrs[i - 1]) for i in range(lo, hi - 1)]
    return lrs[lo + min(range(len(slopes)), key=slopes.__getitem__)]
