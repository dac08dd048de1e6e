"""Batched JPEG decoding on the model's device, so a GPU worker's GPU is a decoder too (nvJPEG).

Pillow reads every header first (`tagger.model.preprocess.open_checked`: allowed formats, bomb limits,
EXIF orientation), so the device never sees a file the CPU path would refuse. Only baseline-
colour JPEGs (RGB or greyscale) go to the device; CMYK/YCCK and every other format stay with
Pillow, and so does any JPEG the device refuses, which Pillow then decodes or fails with its
precise reason. Orientation and the squish resize run on the device too (antialiased bilinear,
the CPU path's `preprocess.squish` filter), and the result is the same CHW uint8 at the model's
input size as the CPU path's.
On a CPU device the same code runs libjpeg-turbo, which is how CI tests it.

The decoder is TorchCodec's `decode_jpeg` (nvJPEG on CUDA), which replaces torchvision's deprecated
image codecs; where TorchCodec cannot be imported (a GPU host whose torch is older than it needs), the
deprecated torchvision one is used instead, and the worker log says so once.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from tagger.model.decode import JPEG_FORMATS, DecodeLimits, open_checked
from tagger.worker.inference import device_lock

log = logging.getLogger(__name__)


def _jpeg_decoder() -> tuple[Callable[..., Any], str]:
    """TorchCodec's batched decode_jpeg, or torchvision's deprecated one where TorchCodec is not installable."""
    try:
        from torchcodec.decoders import decode_jpeg

        return decode_jpeg, "torchcodec"
    except (ImportError, OSError, RuntimeError) as exc:  # a torch older than TorchCodec needs, or no wheel
        from tagger.model.vision import torchvision

        legacy = torchvision().io.decode_jpeg

        warnings.filterwarnings(
            "ignore", message="The image decoding and encoding capabilities", category=DeprecationWarning
        )
        log.warning("TorchCodec unavailable (%s): decoding JPEGs with torchvision's deprecated decoder", exc)
        return legacy, "torchvision"


decode_jpeg, DECODER = _jpeg_decoder()

EXIF_ORIENTATION = 0x0112
_RESIZE_CHUNK = 32  # images resized per call: bounds the float copy (32 x 1080p x 3 x 4 B ~ 0.8 GB)


@dataclass(frozen=True)
class Header:
    """What Pillow learns from a file without decoding it."""

    format: str
    width: int
    height: int
    mode: str
    orientation: int = 1

    @property
    def device_decodable(self) -> bool:
        return self.format in JPEG_FORMATS and self.mode in ("RGB", "L")


def read_header(data: bytes, limits: DecodeLimits) -> Header:
    """Header checks as strict as Pillow's decode; raises ImageError with the same reasons."""
    img = open_checked(data, limits)
    try:
        orientation = int(img.getexif().get(EXIF_ORIENTATION, 1)) if img.format in JPEG_FORMATS else 1
    except Exception:  # unreadable EXIF: Pillow's exif_transpose also ignores it
        orientation = 1
    return Header(img.format or "", img.width, img.height, img.mode, orientation if 1 <= orientation <= 8 else 1)


def orient(chw: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1-8) to a CHW tensor, as Pillow's `ImageOps.exif_transpose` does."""
    h, w = 1, 2
    if orientation == 2:
        return chw.flip(w)
    if orientation == 3:
        return chw.flip(h, w)
    if orientation == 4:
        return chw.flip(h)
    if orientation == 5:
        return chw.transpose(h, w)
    if orientation == 6:
        return chw.transpose(h, w).flip(w)
    if orientation == 7:
        return chw.transpose(h, w).flip(h, w)
    if orientation == 8:
        return chw.transpose(h, w).flip(h)
    return chw


def squish_batch(images: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    """Resize CHW uint8 images of one shape to size x size (aspect ignored), in a few batched calls."""
    out: list[torch.Tensor] = []
    for start in range(0, len(images), _RESIZE_CHUNK):
        chunk = torch.stack(images[start : start + _RESIZE_CHUNK])
        if chunk.shape[-2:] != (size, size):
            x = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            chunk = x.round_().clamp_(0, 255).to(torch.uint8)
        out.extend(chunk.unbind(0))
    return out


class DeviceDecoder:
    """JPEG bytes -> 3 x size x size uint8 on `device`, a whole batch per call."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.size = size
        self.device = device

    def __call__(self, blobs: list[bytes], headers: list[Header]) -> list[torch.Tensor | None]:
        """One result per blob, in order; None where the device could not decode that file."""
        raw = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        try:
            decoded: list[torch.Tensor | None] = list(decode_jpeg(raw, mode="RGB", device=self.device))
        except (RuntimeError, ValueError):  # one bad file fails the whole batched call: isolate it
            decoded = [self._one(t) for t in raw]
        groups: dict[tuple[int, int], list[int]] = {}
        upright: dict[int, torch.Tensor] = {}
        for i, (img, header) in enumerate(zip(decoded, headers, strict=True)):
            if DECODER == "torchcodec":  # TorchCodec applies the EXIF orientation itself
                expected = (header.width, header.height) if header.orientation >= 5 else (header.height, header.width)
            else:
                expected = (header.height, header.width)
            if img is None or tuple(img.shape) != (3, *expected):
                continue  # refused, or disagrees with its own header: Pillow decides
            upright[i] = img if DECODER == "torchcodec" else orient(img, header.orientation)
            groups.setdefault((upright[i].shape[1], upright[i].shape[2]), []).append(i)
        out: list[torch.Tensor | None] = [None] * len(blobs)
        for indices in groups.values():
            for i, pixels in zip(indices, squish_batch([upright[i] for i in indices], self.size), strict=True):
                out[i] = pixels
        return out

    def _one(self, raw: torch.Tensor) -> torch.Tensor | None:
        try:
            return decode_jpeg(raw, mode="RGB", device=self.device)  # type: ignore[no-any-return]
        except (RuntimeError, ValueError):
            return None


@dataclass(frozen=True)
class OnDevice:
    """A served version's device path: its decoder, Pillow's share of the JPEGs, the lock on device work."""

    decoder: DeviceDecoder
    limits: DecodeLimits
    cpu_share: float = 0.0
    lock: threading.Lock = device_lock
