"""Preprocessing defined once, shared by training and inference so the two can never drift.

bytes --decode--> RGB PIL image --reduce, to_uint8--> CHW uint8 tensor --squish--> 3 x size x size
and, on the device, a whole batch at once: uint8 --normalise--> float (ImageNet mean/std).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tagger.model.decode import (  # noqa: F401 - the decode API, re-exported where it always was
    ALLOWED_FORMATS,
    JPEG_FORMATS,
    DecodeLimits,
    decode,
    open_checked,
    to_rgb,
)
from tagger.model.meta import IMAGENET_MEAN, IMAGENET_STD


def squish(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """CHW uint8 -> 3 x size x size uint8, aspect ignored, as the fastai stills tagger was trained.

    Antialiased bilinear, the filter of Pillow's BILINEAR resize (within one level) and of the device
    decoder's resize; torch's uint8 kernel runs it in 0.3 ms for a 360x270 still, Pillow in 0.9 ms.
    """
    if tuple(pixels.shape[-2:]) == (size, size):
        return pixels.contiguous()
    out = F.interpolate(pixels.unsqueeze(0), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0].contiguous()


REDUCING_GAP = 3.0


def reduce(img: Image.Image, size: int) -> Image.Image:
    """Box-reduce by the whole factor that leaves at least REDUCING_GAP x `size` on each side, as Pillow's
    resize does with `reducing_gap=3.0` before its bilinear pass: a large PNG or TIFF reaches the tensor at a
    fraction of its pixels (a 6000x4000 PNG: 3 MB, not 72 MB), and `squish` then gives what Pillow gave."""
    factor_x, factor_y = int(img.width / size / REDUCING_GAP) or 1, int(img.height / size / REDUCING_GAP) or 1
    return img.reduce((factor_x, factor_y)) if factor_x > 1 or factor_y > 1 else img


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """CHW uint8 (a view of a fresh HWC copy); kept as bytes until the batch reaches the device (4x less to copy)."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


class Preprocess:
    """bytes -> CHW uint8 tensor at the model's input size. One instance per model."""

    def __init__(self, size: int, *, limits: DecodeLimits = DecodeLimits()) -> None:
        self.size = size
        self.limits = limits

    def __call__(self, data: bytes) -> torch.Tensor:
        return squish(to_uint8_tensor(reduce(decode(data, size=self.size, limits=self.limits), self.size)), self.size)


class Normalise:
    """uint8 NCHW batch -> float NCHW in the model's dtype, with the artifact's mean/std."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        self.mean = torch.tensor(mean).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std).view(1, 3, 1, 1) * 255.0

    def __call__(self, batch: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        mean = self.mean.to(batch.device)
        std = self.std.to(batch.device)
        return ((batch.float() - mean) / std).to(dtype)
