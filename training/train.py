"""`tagger train`: fit a multi-label CNN on labelled stills, measure it, export and register it.

Stages: load labels -> split -> decode (shared preprocessing) -> fit (BCE-with-logits, AdamW,
one-cycle) -> evaluate on the held-out split -> export safetensors + JSON -> register.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from tagger import artifact, registry
from tagger.architectures import build_model, load_pretrained_backbone
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.device import pick_device
from tagger.preprocess import Normalise, Preprocess
from tagger.settings import Settings
from tagger.storage import open_storage, storage_url_for
from training.data import DecodedStills, LabelledSet, read_labels_csv
from training.metrics import accuracy_multi, fbeta_samples, per_tag_precision_recall
from training.options import get_args_parser  # noqa: F401  (re-exported for `python -m`)

log = logging.getLogger(__name__)


@dataclass
class TrainReport:
    version: str
    arch: str
    train_images: int
    valid_images: int
    epochs: list[dict[str, float]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    activated: bool = False
    seconds: float = 0.0


def augment(batch: torch.Tensor) -> torch.Tensor:
    """Light, fastai-like augmentation on uint8 NCHW: horizontal flips and +-20% lighting."""
    flip = torch.rand(batch.shape[0], device=batch.device) < 0.5
    batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)
    scale = 1.0 + (torch.rand(batch.shape[0], 1, 1, 1, device=batch.device) - 0.5) * 0.4
    return (batch.float() * scale).clamp(0, 255)


def fit(
    model: nn.Module,
    train: DecodedStills,
    valid: DecodedStills,
    args: argparse.Namespace,
    device: torch.device,
    normalise: Normalise,
) -> list[dict[str, float]]:
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=len(train) > args.batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr, total_steps=args.epochs * len(loader))
    loss_fn = nn.BCEWithLogitsLoss()
    amp = device.type == "cuda"
    history = []
    for epoch in tqdm(range(args.epochs), desc="epochs", unit="epoch", disable=None):
        model.train()
        running, seen = 0.0, 0
        for pixels, targets in tqdm(loader, desc=f"epoch {epoch + 1}", unit="batch", leave=False, disable=None):
            pixels, targets = pixels.to(device), targets.to(device)
            x = normalise(augment(pixels))
            if amp:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(model(x).float(), targets)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            running += float(loss.detach()) * len(pixels)
            seen += len(pixels)
        probs, targets = predict_all(model, valid, device, normalise)
        valid_loss = float(nn.functional.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), targets))
        row = {
            "epoch": epoch + 1,
            "train_loss": running / max(seen, 1),
            "valid_loss": valid_loss,
            "accuracy": accuracy_multi(probs, targets, args.threshold),
            "f2": fbeta_samples(probs, targets, args.threshold),
        }
        history.append(row)
        tqdm.write(
            file=sys.stderr,
            s=f"epoch {row['epoch']}: train_loss {row['train_loss']:.4f}  valid_loss {valid_loss:.4f}  "
            f"accuracy {row['accuracy']:.4f}  F2 {row['f2']:.4f}",
        )
    return history


@torch.inference_mode()
def predict_all(
    model: nn.Module, data: DecodedStills, device: torch.device, normalise: Normalise
) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    outs = []
    for start in range(0, len(data), 128):
        x = normalise(data.pixels[start : start + 128].to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            outs.append(torch.sigmoid(model(x).float()).cpu())
    return torch.cat(outs), data.targets


def main(args: argparse.Namespace, settings: Settings | None = None) -> TrainReport:
    settings = settings or Settings.from_env()
    started = time.monotonic()
    torch.manual_seed(args.seed)
    images_url = storage_url_for(args.images) if args.images else settings.storage_url
    if not images_url:
        from tagger.errors import ConfigError

        raise ConfigError("where are the images? pass --images FOLDER|s3://bucket/prefix or set TAGGER_STORAGE_URL")
    storage = open_storage(images_url)
    labelled: LabelledSet = read_labels_csv(args.labels)
    vocabulary = labelled.vocabulary
    train_set, valid_set = labelled.split(args.valid_fraction)
    preprocess = Preprocess(args.size)
    train = DecodedStills(storage, train_set, vocabulary, preprocess, desc="decode train")
    valid = DecodedStills(storage, valid_set, vocabulary, preprocess, desc="decode valid")
    for skipped in (train.skipped, valid.skipped):
        if skipped:
            log.warning("skipped %d unreadable images, e.g. %s", len(skipped), skipped[:3])

    device = pick_device(settings.device)
    model = build_model(args.arch, len(vocabulary))
    if args.weights:
        n = load_pretrained_backbone(model, args.weights)
        print(f"loaded {n} pretrained tensors from {args.weights}", file=sys.stderr)
    else:
        print(f"no --weights given: {args.arch} starts from random initialisation", file=sys.stderr)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    normalise = Normalise()
    print(
        f"training {args.arch} on {len(train)} images, validating on {len(valid)}, "
        f"{len(vocabulary)} tags, {args.size}px, device {device}",
        file=sys.stderr,
    )
    history = fit(model, train, valid, args, device, normalise)

    probs, targets = predict_all(model, valid, device, normalise)
    precision, recall, support = per_tag_precision_recall(probs, targets, args.threshold)
    final = {
        "f2": fbeta_samples(probs, targets, args.threshold),
        "accuracy": accuracy_multi(probs, targets, args.threshold),
        "valid_loss": history[-1]["valid_loss"] if history else None,
        "per_tag": {
            tag: {"precision": round(float(p), 4), "recall": round(float(r), 4), "support": int(s)}
            for tag, p, r, s in zip(vocabulary, precision, recall, support, strict=True)
        },
    }
    meta = artifact.ArtifactMeta(
        version=artifact.new_version(),
        arch=args.arch,
        tags=vocabulary,
        input_size=args.size,
        threshold=args.threshold,
        metrics={k: v for k, v in final.items() if k != "per_tag"} | {"per_tag": final["per_tag"]},
        training={
            "labels": str(args.labels),
            "images": images_url,
            "epochs": args.epochs,
            "lr": args.lr,
            "batch_size": args.batch_size,
            "weights": str(args.weights) if args.weights else None,
            "rows": len(labelled.keys),
            "train_images": len(train),
            "valid_images": len(valid),
            "data_sha256": labelled.fingerprint(),
            "tag_counts": dict(labelled.tag_counts()),
            "code_version": _code_version(),
        },
    )
    store = open_storage(settings.model_store)
    meta = artifact.save(model.to("cpu").float(), meta, store)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        row = registry.register(session, meta, uri=f"{store.url}/{meta.version}", activate_if_none=not args.no_activate)
        activated = row.is_active
    engine.dispose()
    return TrainReport(
        version=meta.version,
        arch=args.arch,
        train_images=len(train),
        valid_images=len(valid),
        epochs=history,
        final=final,
        activated=activated,
        seconds=time.monotonic() - started,
    )


def _code_version() -> str:
    import tagger

    return tagger.__version__
