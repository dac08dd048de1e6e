"""A first measurement on a GPU machine: the worker's own inference path and decode path.

Not the full benchmark (issue 6): it times `worker.inference.predict` (bf16 + channels_last)
for the model-only ceiling and `tagger.model.preprocess.Preprocess` (Pillow + JPEG draft) on threads
for the CPU decode ceiling, on synthetic 1920x1080 JPEG stills.

    python bench/gpu_smoke.py --arch resnet50 --batch 256 --images 512 --threads 16
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from tagger.model.architectures import build_model  # noqa: E402
from tagger.model.device import pick_device  # noqa: E402
from tagger.model.predict import predict, prepare  # noqa: E402
from tagger.model.preprocess import Normalise, Preprocess  # noqa: E402


def stills(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (270, 480, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        img = Image.fromarray(np.roll(base, i * 7, axis=1)).resize((1920, 1080), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--device", default="auto")
    args = p.parse_args()

    device = pick_device(args.device)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, {os.cpu_count()} cores")
    model, dtype = prepare(build_model(args.arch, 180), device)
    batch = torch.randint(0, 255, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    if device.type == "cuda":
        batch = batch.pin_memory()
    norm = Normalise()
    for _ in range(3):
        predict(model, batch, normalise=norm, device=device, dtype=dtype)
    reps = 20 if device.type == "cuda" else 2
    t = time.perf_counter()
    for _ in range(reps):
        predict(model, batch, normalise=norm, device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    model_rate = reps * args.batch / (time.perf_counter() - t)
    print(f"model-only ({args.arch}, {dtype}, batch {args.batch}, incl. H2D + sigmoid + D2H): {model_rate:,.0f} img/s")

    data = stills(args.images)
    pre = Preprocess(args.size)
    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(pre, data[:32]))
        t = time.perf_counter()
        list(pool.map(pre, data))
        decode_rate = len(data) / (time.perf_counter() - t)
    print(
        f"decode ceiling (Pillow + draft, {args.threads} threads, 1920x1080 JPEG -> {args.size}): "
        f"{decode_rate:,.0f} img/s"
    )
    print(f"bound: {'decode' if decode_rate < model_rate else 'model'}; decode/model = {decode_rate / model_rate:.2f}")


if __name__ == "__main__":
    main()
