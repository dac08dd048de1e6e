"""The fine-tuning schedule: layer groups, freezing, discriminative learning rates, one-cycle schedule.

As fastai's `fine_tune`: train the head with the body frozen, then unfreeze everything and
train again with learning rates that rise from the early layers (lr/100) to the head (lr).
"""

from __future__ import annotations

import math

from torch import nn

from tagger.model.architectures import head_parameters


def layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Three groups: early body, late body, head (fastai's split for ResNets, by halves elsewhere)."""
    head_ids = {id(p) for p in head_parameters(model)}
    if all(hasattr(model, n) for n in ("conv1", "layer1", "layer2", "layer3", "layer4")):
        early = [p for n in ("conv1", "bn1", "layer1", "layer2") for p in getattr(model, n).parameters()]
        early_ids = {id(p) for p in early}
        late = [p for p in model.parameters() if id(p) not in early_ids and id(p) not in head_ids]
    else:
        body = [p for p in model.parameters() if id(p) not in head_ids]
        early, late = body[: len(body) // 2], body[len(body) // 2 :]
    return [early, late, [p for p in model.parameters() if id(p) in head_ids]]


def set_frozen(model: nn.Module, groups: list[list[nn.Parameter]], frozen: bool) -> None:
    """Freeze every group but the head; BatchNorm layers keep training, as fastai's `train_bn`."""
    bn_ids = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters()}
    for group in groups[:-1]:
        for p in group:
            p.requires_grad_(not frozen or id(p) in bn_ids)


def discriminative(max_lr: float, groups: int, spread: float = 100.0) -> list[float]:
    """Geometric learning rates from max_lr/spread (first group) to max_lr (head)."""
    if groups == 1:
        return [max_lr]
    return [max_lr / spread ** (1 - i / (groups - 1)) for i in range(groups)]


def one_cycle(step: int, total: int, *, pct_start: float = 0.25, div: float = 25.0, final_div: float = 1e5) -> float:
    """Multiplier of the peak learning rate at `step`: cosine warm-up from 1/div, cosine anneal to 1/final_div.

    A pure function of the step, so resuming from a checkpoint needs only the step count.
    """
    warm = max(1, int(total * pct_start))
    if step < warm:
        start, end, t = 1 / div, 1.0, step / warm
    else:
        start, end, t = 1.0, 1 / (div * final_div), (step - warm) / max(1, total - warm)
    return end + (start - end) * (1 + math.cos(math.pi * min(t, 1.0))) / 2
