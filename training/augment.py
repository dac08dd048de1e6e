"""Training augmentation in the spirit of fastai's `aug_transforms`, done on whole batches on the device.

Flip, a small rotation and zoom (one affine warp with reflection padding), and lighting
(brightness and contrast). Inputs and outputs are float pixels in 0..255, NCHW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    flip: float = 0.5  # probability of a horizontal flip
    max_rotate: float = 10.0  # degrees, as fastai
    max_zoom: float = 1.1  # as fastai
    max_lighting: float = 0.2  # as fastai: brightness and contrast move by up to +-20%
    p_affine: float = 0.75  # as fastai

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.float()
        n = x.shape[0]
        dev = x.device
        angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(self.max_rotate)
        zoom = 1 + torch.rand(n, device=dev) * (self.max_zoom - 1)
        affine = torch.rand(n, device=dev) < self.p_affine
        angle, zoom = torch.where(affine, angle, 0.0), torch.where(affine, zoom, 1.0)
        flip = torch.where(torch.rand(n, device=dev) < self.flip, -1.0, 1.0)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [
                torch.stack([cos * flip, -sin, torch.zeros_like(cos)], 1),
                torch.stack([sin * flip, cos, torch.zeros_like(cos)], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        brightness = 1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * self.max_lighting
        contrast = 1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * self.max_lighting
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return ((x - mean) * contrast + mean * brightness).clamp(0, 255)
