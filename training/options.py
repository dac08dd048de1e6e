"""Options of `tagger train`, kept free of torch imports so `tagger --help` stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path


def get_args_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="tagger train", description="Train a multi-label tagging model.")
    p.add_argument("--labels", type=Path, required=True, help="CSV of `image_id,tags` (tags space-separated)")
    p.add_argument(
        "--images", default=None, help="folder or s3://bucket/prefix holding the images (default: TAGGER_STORAGE_URL)"
    )
    p.add_argument("--arch", default="resnet18", help="torchvision architecture (resnet18..resnet152, ...)")
    p.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="local pretrained weights (.safetensors or state_dict .pth); random init without",
    )
    p.add_argument("--size", type=int, default=224, help="square input size after squish resize")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--valid-fraction", type=float, default=0.2, help="share of images held out (by key hash)")
    p.add_argument("--threshold", type=float, default=0.2, help="tag threshold stored in the artifact")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-activate", action="store_true", help="register as a candidate even if none is active")
    p.add_argument("--json", action="store_true", help="print the final report as JSON")
    return p
