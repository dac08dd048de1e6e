"""What `tagger train` refuses before any work: checked before torch is even imported, so a typo in a
command fails in a moment, not after the seconds a model library takes to load."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from tqdm import tqdm

from tagger.errors import ConfigError
from tagger.labels import LabelledSet
from tagger.settings import Settings
from tagger.storage import open_storage

log = logging.getLogger(__name__)

# what training/checkpoint.py writes (its TENSORS and STATE): a run to resume needs both
CHECKPOINT_FILES = ("checkpoint.safetensors", "checkpoint.json")


def check_writable(settings: Settings, args: argparse.Namespace) -> None:
    """Every place a run writes (checkpoint, plots, model store), tried before the first epoch: a run must
    not find out after hours of training that it cannot keep what it learnt. Raises ConfigError."""
    folders = {
        "checkpoint folder (--checkpoint, else TAGGER_VAR_DIR/train/checkpoint)": args.checkpoint
        or settings.var_dir / "train" / "checkpoint",
        "plots folder (--plots, else TAGGER_VAR_DIR/train)": args.plots or settings.var_dir / "train",
    }
    for what, folder in folders.items():
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            probe = Path(folder) / f".write-check-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"cannot write the {what} {folder}: {exc.strerror or exc}") from None
    store = open_storage(settings.model_store)
    probe_key = f".write-check-{os.getpid()}"
    try:
        store.write(probe_key, b"")
    except Exception as exc:
        raise ConfigError(
            f"cannot write to the model store {store.url} (TAGGER_MODEL_STORE): {exc}; nothing was trained"
        ) from None
    try:
        store.delete(probe_key)
    except Exception as exc:  # a write-once store (no delete permission) still takes artifacts
        log.warning("could not remove the write check %s/%s: %s", store.url, probe_key, exc)


def check_run(args: argparse.Namespace, settings: Settings) -> None:
    """What can be refused before any work, labels included: a run with no epoch, a place it cannot write.

    Raises ConfigError with the reason."""
    if args.freeze_epochs is None:
        args.freeze_epochs = 0 if args.random_init else 1
    if args.freeze_epochs + args.epochs < 1 and not args.find_lr:
        raise ConfigError("nothing to train: --epochs and --freeze-epochs are both 0")
    if not args.find_lr:  # found now, not after the last epoch
        check_writable(settings, args)
    if getattr(args, "resume", False):
        folder = Path(args.checkpoint or settings.var_dir / "train" / "checkpoint")
        if not all((folder / name).is_file() for name in CHECKPOINT_FILES):
            raise ConfigError(f"no checkpoint to resume in {folder}")


def say(message: str) -> None:
    """Status lines go to stderr (above any progress bar), so `--json` output stays clean."""
    tqdm.write(message, file=sys.stderr)


def drop_rare(data: LabelledSet, min_count: int) -> tuple[LabelledSet, dict[str, int]]:
    """Remove tags seen fewer than min_count times; images left without tags stay (all negatives)."""
    counts = data.tag_counts()
    rare = {t: n for t, n in counts.items() if n < min_count}
    kept = [[t for t in tags if t not in rare] for tags in data.tags]
    return dataclasses.replace(data, tags=kept), rare
