"""Inference defined once: a uint8 batch in, per-tag probabilities (and, from a model split at its head,
the images' embeddings) out.

Workers, the evaluation at the end of training and the promotion gate all score through
`infer` (or `predict`, its probabilities) on a model made ready by `prepare`, so what is measured is
what serves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tagger.model.preprocess import Normalise


def joint_energy(logits: torch.Tensor) -> torch.Tensor:
    """N x tags logits -> N JointEnergy scores (float32), the sum over tags of softplus(logit): low on images
    unlike anything the model learned (`tagger.model.familiarity`)."""
    return F.softplus(logits.float()).sum(dim=1)


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


@dataclass(frozen=True)
class Outputs:
    """One batch's results on the host: N x tags float32 probabilities, N x features float16 embeddings,
    L2-normalised (cosine similarity is then a dot product), from a model split at its head (else None), and
    N float32 JointEnergy scores of the same logits (`tagger.model.familiarity`)."""

    probs: torch.Tensor
    embeddings: torch.Tensor | None = None
    energy: torch.Tensor | None = None


def predict(
    model: nn.Module,
    batch: torch.Tensor,
    *,
    normalise: Normalise,
    device: torch.device,
    dtype: torch.dtype,
    pad_to: int | None = None,
) -> torch.Tensor:
    """NCHW uint8 (on the host or the device) -> N x tags float32 probabilities on the host (`infer`'s)."""
    return infer(model, batch, normalise=normalise, device=device, dtype=dtype, pad_to=pad_to).probs


@torch.inference_mode()
def infer(
    model: nn.Module,
    batch: torch.Tensor,
    *,
    normalise: Normalise,
    device: torch.device,
    dtype: torch.dtype,
    pad_to: int | None = None,
) -> Outputs:
    """NCHW uint8 (on the host or the device) -> the batch's probabilities, and its embeddings when `model`
    gives (logits, features) (`architectures.SplitAtHead`).

    pad_to: a compiled model sees one batch shape only; a short batch is padded and cut back.
    """
    n = batch.shape[0]
    if pad_to is not None and n > pad_to:
        parts = [
            infer(model, p, normalise=normalise, device=device, dtype=dtype, pad_to=pad_to) for p in batch.split(pad_to)
        ]
        embeddings = [p.embeddings for p in parts if p.embeddings is not None]
        energy = torch.cat([p.energy for p in parts if p.energy is not None])
        return Outputs(torch.cat([p.probs for p in parts]), torch.cat(embeddings) if embeddings else None, energy)
    if pad_to is not None and n < pad_to:
        batch = torch.cat([batch, batch.new_zeros((pad_to - n, *batch.shape[1:]))])
    x = batch.to(device, non_blocking=device.type == "cuda").contiguous(memory_format=torch.channels_last)
    x = normalise(x, dtype=dtype)  # elementwise: stays channels_last, as `prepare`'s model expects
    out = model(x)
    logits, features = out if isinstance(out, tuple) else (out, None)
    probs = torch.sigmoid(logits[:n].float()).cpu()
    energy = joint_energy(logits[:n]).cpu()
    if features is None:
        return Outputs(probs, energy=energy)
    # Normalised in float32 (bf16 on CUDA loses too much for a norm), then halved: 2 bytes per dimension.
    return Outputs(probs, F.normalize(features[:n].float(), dim=1).half().cpu(), energy)
