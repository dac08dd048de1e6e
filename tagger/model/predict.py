"""Inference defined once: a uint8 batch in, per-tag probabilities out.

Workers, the evaluation at the end of training and the promotion gate all score through
`predict` on a model made ready by `prepare`, so what is measured is what serves.
"""

from __future__ import annotations

import torch
from torch import nn

from tagger.model.preprocess import Normalise


def prepare(model: nn.Module, device: torch.device) -> tuple[nn.Module, torch.dtype]:
    """Move a model for inference: channels_last everywhere, bf16 on CUDA, float32 on CPU.

    channels_last on CPU (oneDNN's NHWC convolutions), measured on 2 cores at batch 32 against NCHW:
    ResNet-18 at 224 px 1.3x, ResNet-50 1.35x, EfficientNet-B0 1.5x, MobileNet-V3-small at 32 px 3.4x,
    ConvNeXt-T even (BENCHMARKS.md, 2026-11-30 (night)).
    """
    model.eval()
    if device.type == "cuda":
        model = model.to(device=device, dtype=torch.bfloat16)
        dtype = torch.bfloat16
    else:
        model = model.to(device)
        dtype = torch.float32
    return model.to(memory_format=torch.channels_last), dtype


def compile_for_serving(
    model: nn.Module,
    *,
    batch_size: int,
    input_size: int,
    normalise: Normalise,
    device: torch.device,
    dtype: torch.dtype,
) -> nn.Module:
    """torch.compile for one fixed batch shape (`predict(pad_to=batch_size)` keeps it fixed), warmed
    up here, beside the model still serving, so no real batch waits for the compiler."""
    compiled: nn.Module = torch.compile(model, dynamic=False)  # type: ignore[assignment]
    warm = torch.zeros((batch_size, 3, input_size, input_size), dtype=torch.uint8)
    for _ in range(2):
        predict(compiled, warm, normalise=normalise, device=device, dtype=dtype)
    return compiled


@torch.inference_mode()
def predict(
    model: nn.Module,
    batch: torch.Tensor,
    *,
    normalise: Normalise,
    device: torch.device,
    dtype: torch.dtype,
    pad_to: int | None = None,
) -> torch.Tensor:
    """NCHW uint8 (on the host or the device) -> N x tags float32 probabilities on the host.

    pad_to: a compiled model sees one batch shape only; a short batch is padded and cut back.
    """
    n = batch.shape[0]
    if pad_to is not None and n > pad_to:
        parts = batch.split(pad_to)
        return torch.cat(
            [predict(model, p, normalise=normalise, device=device, dtype=dtype, pad_to=pad_to) for p in parts]
        )
    if pad_to is not None and n < pad_to:
        batch = torch.cat([batch, batch.new_zeros((pad_to - n, *batch.shape[1:]))])
    x = batch.to(device, non_blocking=device.type == "cuda").contiguous(memory_format=torch.channels_last)
    x = normalise(x, dtype=dtype)  # elementwise: stays channels_last, as `prepare`'s model expects
    return torch.sigmoid(model(x)[:n].float()).cpu()
