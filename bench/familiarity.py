"""What the unfamiliarity score costs per batch: `predict.infer` (the forward pass, probabilities, embeddings and
the JointEnergy), the percentile the worker then takes (`familiarity.unfamiliarity`), against the same forward
pass without them.

    python bench/familiarity.py [--arch resnet18] [--size 224] [--tags 180] [--batch 32] [--runs 20]

Prints one JSON object: per-batch medians (ms) of the forward pass with probabilities only, of the added
JointEnergy (measured on the batch's logits, many times over, as it runs inside `infer`) and of the percentile,
and their share of the batch's inference time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from tagger.model.architectures import build_model
from tagger.model.familiarity import energy_quantiles, unfamiliarity
from tagger.model.predict import joint_energy, prepare
from tagger.model.preprocess import Normalise


def _median_ms(fn: object, runs: int, inner: int = 1) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(inner):
            fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) / inner * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--tags", type=int, default=180)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    model, dtype = prepare(build_model(args.arch, args.tags), device)
    normalise = Normalise()
    batch = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)

    @torch.inference_mode()
    def forward() -> torch.Tensor:
        """The pass `infer` runs, up to the logits on the device."""
        x = batch.to(device).contiguous(memory_format=torch.channels_last)
        out = model(normalise(x, dtype=dtype))
        return out[0] if isinstance(out, tuple) else out

    def synced(fn: object) -> object:
        def run() -> None:
            fn()  # type: ignore[operator]
            if device.type == "cuda":
                torch.cuda.synchronize()

        return run

    for _ in range(3):  # warm-up: allocator, oneDNN/cuDNN kernels
        forward()
    logits = forward()

    def probs_only() -> None:
        torch.sigmoid(forward().float()).cpu()

    @torch.inference_mode()
    def energy_only() -> None:
        joint_energy(logits).cpu()

    held_out = joint_energy(torch.randn(2000, args.tags) * 3).numpy()
    quantiles = energy_quantiles(held_out)
    energy = joint_energy(logits).cpu().numpy()

    def percentile_only() -> None:
        unfamiliarity(energy, quantiles)

    t_batch = _median_ms(synced(probs_only), args.runs)
    t_energy = _median_ms(synced(energy_only), args.runs, inner=200)
    t_percentile = _median_ms(percentile_only, args.runs, inner=200)
    print(
        json.dumps(
            {
                "arch": args.arch,
                "size": args.size,
                "tags": args.tags,
                "batch": args.batch,
                "device": str(device),
                "host": platform.processor() or platform.machine(),
                "torch_threads": torch.get_num_threads(),
                "batch_inference_ms": round(t_batch, 3),
                "joint_energy_ms": round(t_energy, 4),
                "percentile_ms": round(t_percentile, 4),
                "share_of_inference": round((t_energy + t_percentile) / t_batch, 5),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
