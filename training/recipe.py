"""The training recipe: fine-tune a torchvision classifier into a multi-label tagger, measure it, export it.

Stages, one function each, on the labelled images the caller read: split -> decode (the inference
preprocessing) -> model (ImageNet, local or random weights) -> [find-lr] -> fit (head first, then every
layer with discriminative rates; one-cycle; early stopping; checkpoints) -> evaluate (F2, mAP, per-tag
AP, calibrated thresholds, scored as served) -> export safetensors + JSON. Reading the labels (from a
CSV or the database), registering, the promotion gate, activation and re-tagging are the caller's
(`tagger.cli.train`); the recipe never opens a database.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from tagger.errors import ConfigError, TaggerError
from tagger.labels import LabelledSet
from tagger.model import artifact
from tagger.model.architectures import build_model, load_imagenet_weights, load_pretrained_backbone
from tagger.model.device import pick_device
from tagger.model.familiarity import energy_quantiles
from tagger.model.meta import ArtifactMeta, new_version
from tagger.model.preprocess import Normalise, Preprocess
from tagger.settings import Settings
from tagger.storage import open_storage
from tagger.training import checkpoint
from tagger.training.augment import Augment
from tagger.training.calibrate import describe
from tagger.training.data import DecodedStills
from tagger.training.evaluate import Candidate, bce, evaluate, highest_losses, predict_all, predict_served
from tagger.training.groups import Grouping, crossing
from tagger.training.loss import make_loss
from tagger.training.metrics import accuracy_multi, fbeta_samples, mean_average_precision
from tagger.training.options import get_args_parser  # noqa: F401  (re-exported for `python -m`)
from tagger.training.preflight import check_run, say
from tagger.training.schedule import discriminative, layer_groups, one_cycle, set_frozen
from tagger.training.suspects import suspects

log = logging.getLogger(__name__)

LR_FIND_RECORD = "lr_find.json"  # beside lr_find.png: the series, for the next run on the same data
MIN_TRAIN_IMAGES = 8  # below this a batch-norm network cannot train meaningfully (and a batch of one cannot)


@dataclass
class TrainReport:
    version: str | None
    arch: str
    train_images: int
    valid_images: int
    epochs: list[dict[str, float]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, str] = field(default_factory=dict)
    suggested_lr: float | None = None
    seconds: float = 0.0
    split: dict[str, Any] = field(default_factory=dict)


def split_record(
    labelled: LabelledSet, valid_set: LabelledSet, near: Grouping | None, args: argparse.Namespace
) -> dict[str, Any]:
    """How the split was made and what crosses it: near-duplicate pairs with one still held out and the
    other trained on (zero for the group split, by design), and with --show-leak what the key-hash split
    would have put across. Said on stderr and kept in the report and the artifact."""
    by = args.split
    record: dict[str, Any] = {"by": by, "groups": len(set(labelled.groups)) if labelled.groups else None}
    if near is None:
        return record
    record |= {
        "near_duplicates_from": near.source,
        "near_duplicate_pairs": len(near.pairs),
        "pairs_crossing": crossing(near.pairs, valid_set.keys),
    }
    say(
        f"split by {'group' if by == 'groups' else 'key hash'}: {record['pairs_crossing']} of "
        f"{len(near.pairs)} near-duplicate pairs cross it (near-duplicates from {near.source})"
    )
    if args.show_leak:
        _, by_key = labelled.split(args.valid_fraction, by_key=True)
        record["key_hash_pairs_crossing"] = crossing(near.pairs, by_key.keys)
        say(f"a split by key hash would have put {record['key_hash_pairs_crossing']} of them across")
    return record


def init_weights(model: nn.Module, args: argparse.Namespace, arch: str) -> str:
    if args.random_init:
        log.warning("--random-init: %s starts from random weights; expect a much weaker model", arch)
        say(f"WARNING: {arch} starts from random initialisation (--random-init); ImageNet weights train far better")
        return "random"
    if args.weights == "imagenet":
        n = load_imagenet_weights(model, arch)
        say(f"loaded {n} ImageNet tensors for {arch} through torchvision's weights API")
        return "imagenet"
    n = load_pretrained_backbone(model, Path(args.weights))
    say(f"loaded {n} pretrained tensors from {args.weights}")
    return str(args.weights)


class Step:
    """One optimisation step's forward pass and loss, shared by the fit loop and the lr finder."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        normalise: Normalise,
        augment: Augment,
        loss_fn: nn.Module | None = None,
    ) -> None:
        self.model, self.device, self.normalise, self.augment = model, device, normalise, augment
        self.loss_fn = loss_fn or nn.BCEWithLogitsLoss()
        self.amp = device.type == "cuda"

    def __call__(self, pixels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pixels, targets = pixels.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
        x = self.normalise(self.augment(pixels)).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            return self.loss_fn(self.model(x).float(), targets)


def augmentation(args: argparse.Namespace) -> Augment:
    return Augment(max_rotate=args.max_rotate, max_zoom=args.max_zoom, max_lighting=args.max_lighting)


def _loader(data: DecodedStills, batch_size: int, seed: int) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        # Batch norm cannot train on a batch of one: drop a last short batch (keep a single short one).
        drop_last=len(data) > batch_size,
        generator=torch.Generator().manual_seed(seed),
    )


def fit(
    model: nn.Module,
    train: DecodedStills,
    valid: DecodedStills,
    args: argparse.Namespace,
    device: torch.device,
    normalise: Normalise,
    *,
    ckpt_dir: Path,
    run_id: dict[str, Any],
) -> list[dict[str, Any]]:
    """Fine-tune in place; the weights with the lowest validation loss are restored at the end."""
    groups = layer_groups(model)
    optimiser = torch.optim.AdamW([{"params": g} for g in groups], lr=args.lr, weight_decay=args.weight_decay)
    step_fn = Step(model, device, normalise, augmentation(args), make_loss(args))
    steps_per_epoch = len(_loader(train, args.batch_size, 0))
    frozen_peaks = [args.lr / 10, args.lr / 10, args.lr]
    # As fastai's fine_tune: after the frozen phase the base rate halves, and spreads across the groups.
    base = args.lr / 2 if args.freeze_epochs else args.lr
    unfrozen_peaks = discriminative(base, len(groups), args.lr_spread)
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_loss": float("inf"), "bad_epochs": 0, "run": run_id}
    best: dict[str, torch.Tensor] | None = None
    if args.resume:
        state, best = checkpoint.load(ckpt_dir, model=model, optimiser=optimiser)
        if state.get("run") != run_id:
            raise ConfigError(
                f"the checkpoint in {ckpt_dir} is from a different run (arch, data or size); not resuming"
            )
        say(f"resuming from {ckpt_dir} after epoch {state['epoch']}")
    total = args.freeze_epochs + args.epochs
    for epoch in tqdm(range(state["epoch"], total), desc="epochs", unit="epoch", disable=None, initial=state["epoch"]):
        frozen = epoch < args.freeze_epochs
        set_frozen(model, groups, frozen)
        phase_epoch, phase_len = (epoch, args.freeze_epochs) if frozen else (epoch - args.freeze_epochs, args.epochs)
        peaks = frozen_peaks if frozen else unfrozen_peaks
        model.train()
        running, seen, started = 0.0, 0, time.monotonic()
        loader = _loader(train, args.batch_size, args.seed * 1000 + epoch)
        for i, (pixels, targets) in enumerate(
            tqdm(loader, desc=f"epoch {epoch + 1}/{total}", unit="batch", leave=False, disable=None)
        ):
            scale = one_cycle(phase_epoch * steps_per_epoch + i, phase_len * steps_per_epoch)
            for group, peak in zip(optimiser.param_groups, peaks, strict=True):
                group["lr"] = peak * scale
            loss = step_fn(pixels, targets)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            running += float(loss.detach()) * len(pixels)
            seen += len(pixels)
        probs, targets, _ = predict_all(model, valid, device, normalise, dtype=torch.float32)
        row = {
            "epoch": epoch + 1,
            "frozen": frozen,
            "train_loss": running / max(seen, 1),
            "valid_loss": bce(probs, targets),
            "accuracy": accuracy_multi(probs, targets, args.threshold),
            "f2": fbeta_samples(probs, targets, args.threshold),
            "map": mean_average_precision(probs, targets),
            "seconds": round(time.monotonic() - started, 2),
        }
        state["history"].append(row)
        say(
            f"epoch {row['epoch']}{' (head only)' if frozen else ''}: train_loss {row['train_loss']:.4f}  "
            f"valid_loss {row['valid_loss']:.4f}  accuracy {row['accuracy']:.4f}  F2 {row['f2']:.4f}  "
            f"mAP {row['map']:.4f}"
        )
        if row["valid_loss"] < state["best_loss"] - 1e-4:
            state["best_loss"], state["bad_epochs"] = row["valid_loss"], 0
            best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        checkpoint.save(ckpt_dir, model=model, optimiser=optimiser, best=best, state=state)
        if args.patience and not frozen and state["bad_epochs"] >= args.patience:
            say(f"early stop: validation loss has not improved for {args.patience} epochs")
            break
    if best is not None:
        model.load_state_dict(best)
    return list(state["history"])


def main(
    args: argparse.Namespace, settings: Settings, labelled: LabelledSet, near: Grouping | None = None
) -> tuple[TrainReport, Candidate | None]:
    """The recipe: `labelled` -> split -> decode -> model -> fit -> evaluate -> artifact in the model store.
    `near`, when given, holds the near-duplicate pairs found in `labelled` (whose `groups` the split keeps
    whole), for the report of how many cross the split.

    Returns the report and the saved candidate (None after `--find-lr`, which only plots). Reading the
    labels, registering, the promotion gate, activation and re-tagging belong to the caller (`tagger train`).
    """
    started = time.monotonic()
    check_run(args, settings)
    torch.manual_seed(args.seed)
    device = pick_device(settings.device)
    arch = args.arch or ("resnet50" if device.type == "cuda" else "resnet18")
    vocabulary = labelled.vocabulary
    train_set, valid_set = labelled.split(args.valid_fraction, by_key=args.split == "key")
    split = split_record(labelled, valid_set, near, args)
    preprocess = Preprocess(args.size)
    train = DecodedStills(train_set, vocabulary, preprocess, desc="decode train")
    valid = DecodedStills(valid_set, vocabulary, preprocess, desc="decode valid")
    for skipped in (train.skipped, valid.skipped):
        if skipped:
            log.warning("skipped %d unreadable images, e.g. %s", len(skipped), skipped[:3])
    if len(train) < MIN_TRAIN_IMAGES:
        raise ConfigError(
            f"too few readable labelled images to train: {len(train)} for training and {len(valid)} held out "
            f"(of {len(labelled.keys)} labelled); label at least {MIN_TRAIN_IMAGES + 2} readable images"
        )

    model = build_model(arch, len(vocabulary))
    init = init_weights(model, args, arch)
    model = model.to(device).to(memory_format=torch.channels_last)  # as served (`predict.prepare`); faster on CPU too
    normalise = Normalise()
    plots_dir = args.plots or settings.var_dir / "train"
    report = TrainReport(version=None, arch=arch, train_images=len(train), valid_images=len(valid), split=split)
    run_id = {"arch": arch, "size": args.size, "tags": vocabulary, "data": labelled.fingerprint()}
    # A range test speaks for a run that starts where it started: same data, weights, phases and batches.
    finder_key = {
        **run_id,
        "init": init,
        "freeze_epochs": args.freeze_epochs,
        "batch_size": args.batch_size,
        "valid_fraction": args.valid_fraction,
    }
    if args.find_lr:
        return _find_lr(model, train, device, normalise, args, plots_dir, report, started, finder_key), None

    say(
        f"training {arch} on {len(train)} images, validating on {len(valid)}, {len(vocabulary)} tags, "
        f"{args.size}px, {args.freeze_epochs} frozen + {args.epochs} epochs, device {device}"
    )
    ckpt_dir = args.checkpoint or settings.var_dir / "train" / "checkpoint"
    history = fit(model, train, valid, args, device, normalise, ckpt_dir=ckpt_dir, run_id=run_id)
    probs, targets, energy = predict_served(model, valid, device, normalise)
    scored = ScoredOutOfSample(probs, targets, valid)
    if args.folds:
        fold_probs = out_of_fold(train, valid, args, device, normalise, arch=arch, ckpt_dir=ckpt_dir, run_id=run_id)
        scored = ScoredOutOfSample(torch.cat([fold_probs, probs]), torch.cat([train.targets, targets]), train, valid)
    final, fitted = evaluate(probs, targets, vocabulary, args)
    say(
        f"held-out F2 {final['f2']:.4f} at threshold {args.threshold}, {final['f2_calibrated']:.4f} with the "
        f"fitted thresholds (cross-fitted: {describe(fitted)}); mAP {final['map']:.4f}"
    )
    meta = ArtifactMeta(
        version=new_version(),
        arch=arch,
        tags=vocabulary,
        input_size=args.size,
        threshold=fitted.threshold,
        tag_thresholds=fitted.tag_thresholds,
        energy_quantiles=energy_quantiles(energy.numpy()),
        metrics=final,
        training=_training_record(
            args,
            labelled,
            train,
            valid,
            init=init,
            history=history,
            lr_find=_recorded_lr_find(plots_dir, finder_key),
            probs=probs,
            targets=targets,
            split=report.split,
            scored=scored,
        ),
    )
    store = open_storage(settings.model_store)
    try:
        meta = artifact.save(copy.deepcopy(model).to("cpu").float(), meta, store)
    except Exception as exc:
        raise TaggerError(
            f"the trained model could not be saved to {store.url}: {exc}. The run's last checkpoint is in "
            f"{ckpt_dir}: fix the model store, then `tagger train --resume` with the same options continues "
            "from it instead of starting over"
        ) from exc
    report.version, report.epochs, report.final = meta.version, history, final

    from tagger.training.plots import plot_curves

    report.plots["curves"] = str(plot_curves(history, plots_dir / f"{meta.version}-curves.png"))
    say(f"training curves: {report.plots['curves']}")
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # a finished run leaves nothing to resume
    if meta.training.get("lr_find"):  # kept with this model: the range test preceded this run, not later ones
        (plots_dir / LR_FIND_RECORD).unlink(missing_ok=True)
    report.seconds = time.monotonic() - started
    candidate = Candidate(meta, f"{store.url}/{meta.version}", valid_set, valid, probs)
    return report, candidate


class ScoredOutOfSample:
    """Labelled images with probabilities from models that did not train on them: the held-out images (the
    final model), and with `--folds` every training image too (the model that left its fold out)."""

    def __init__(self, probs: torch.Tensor, targets: torch.Tensor, *parts: DecodedStills) -> None:
        self.probs, self.targets = probs, targets
        self.images = [(url, key) for part in parts for url, key in zip(part.storage_urls, part.keys, strict=True)]


def out_of_fold(
    train: DecodedStills,
    valid: DecodedStills,
    args: argparse.Namespace,
    device: torch.device,
    normalise: Normalise,
    *,
    arch: str,
    ckpt_dir: Path,
    run_id: dict[str, Any],
) -> torch.Tensor:
    """Each training image's probabilities from a model trained as the main one (same options, same held-out
    images to stop on) on the other `args.folds` - 1 folds: out-of-fold, so it never saw the image's labels."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed + 7)).tolist()
    folds = [order[k :: args.folds] for k in range(args.folds)]
    probs = torch.full_like(train.targets, torch.nan)  # every row is filled by the fold that left it out
    fold_args = argparse.Namespace(**{**vars(args), "resume": False})
    for k, held in enumerate(folds):
        say(f"fold {k + 1}/{args.folds}: training on {len(train) - len(held)} images to score the other {len(held)}")
        model = build_model(arch, train.targets.shape[1])
        init_weights(model, fold_args, arch)
        model = model.to(device).to(memory_format=torch.channels_last)
        left_out = set(held)
        rest = [i for i in order if i not in left_out]
        fit(
            model,
            train.take(rest),
            valid,
            fold_args,
            device,
            normalise,
            ckpt_dir=ckpt_dir / f"fold-{k}",
            run_id={**run_id, "fold": k},
        )
        probs[held] = predict_served(model, train.take(held), device, normalise)[0]
        shutil.rmtree(ckpt_dir / f"fold-{k}", ignore_errors=True)
    return probs


def _training_record(
    args: argparse.Namespace,
    labelled: LabelledSet,
    train: DecodedStills,
    valid: DecodedStills,
    *,
    init: str,
    history: list[dict[str, Any]],
    lr_find: dict[str, Any] | None,
    probs: torch.Tensor,
    targets: torch.Tensor,
    split: dict[str, Any],
    scored: ScoredOutOfSample,
) -> dict[str, Any]:
    """What the artifact keeps of the run that made it: the data, the options, the history, the range
    test that informed it and the held-out images it got most wrong (the model pages show them)."""
    return {
        "labels": str(args.labels),
        "images": " ".join(sorted(set(labelled.storage_urls))),
        "init": init,
        "freeze_epochs": args.freeze_epochs,
        "epochs": args.epochs,
        "epochs_run": len(history),
        "lr": args.lr,
        "lr_spread": args.lr_spread,
        "batch_size": args.batch_size,
        "weight_decay": args.weight_decay,
        "loss": args.loss,
        "asl": {"gamma_neg": args.asl_gamma_neg, "gamma_pos": args.asl_gamma_pos, "clip": args.asl_clip}
        if args.loss == "asl"
        else None,
        "seed": args.seed,
        "rows": len(labelled.keys),
        "train_images": len(train),
        "valid_images": len(valid),
        "valid_fraction": args.valid_fraction,
        "split": split,
        "data_sha256": labelled.fingerprint(),
        "tag_counts": dict(labelled.tag_counts()),
        "history": history,
        "lr_find": lr_find,
        "highest_losses": highest_losses(
            probs, targets, labelled.vocabulary, list(zip(valid.storage_urls, valid.keys, strict=True))
        ),
        "folds": args.folds,
        "label_suspects": suspects(scored.probs, scored.targets, labelled.vocabulary, scored.images),
        "code_version": _code_version(),
    }


def _find_lr(
    model: nn.Module,
    train: DecodedStills,
    device: torch.device,
    normalise: Normalise,
    args: argparse.Namespace,
    plots_dir: Path,
    report: TrainReport,
    started: float,
    finder_key: dict[str, Any],
) -> TrainReport:
    from tagger.training.lr_find import lr_find
    from tagger.training.plots import plot_lr_find

    groups = layer_groups(model)
    set_frozen(model, groups, args.freeze_epochs > 0)
    step_fn = Step(model, device, normalise, augmentation(args), make_loss(args))

    def batches() -> Any:
        return iter(_loader(train, args.batch_size, args.seed))

    lrs, losses, suggestion = lr_find(model, batches, step_fn, weight_decay=args.weight_decay)
    path = plot_lr_find(lrs, losses, suggestion, plots_dir / "lr_find.png")
    finite = [(lr, loss) for lr, loss in zip(lrs, losses, strict=True) if math.isfinite(loss)]  # JSON has no inf
    record = {
        "run": finder_key,
        "lrs": [lr for lr, _ in finite],
        "losses": [loss for _, loss in finite],
        "suggestion": suggestion,
        "frozen": args.freeze_epochs > 0,
    }
    (plots_dir / LR_FIND_RECORD).write_text(json.dumps(record))
    say(f"learning-rate range test over {len(lrs)} steps: suggested --lr {suggestion:.1e}; plot: {path}")
    report.suggested_lr, report.plots["lr_find"] = suggestion, str(path)
    report.seconds = time.monotonic() - started
    return report


def _recorded_lr_find(plots_dir: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The range test `--find-lr` ran just before this run, on the same data, architecture, size, start
    weights, phases and batch size, to keep beside the model it informed (the model pages plot it); None
    when there was none or it was for another run. The next run that keeps it removes the file."""
    try:
        record = json.loads((plots_dir / LR_FIND_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("run") != key:
        return None
    return {k: record.get(k) for k in ("lrs", "losses", "suggestion", "frozen")}


def _code_version() -> str:
    import tagger

    return tagger.__version__
