"""Labelled data: the `image_id,tags` CSV (tags space-separated), split and decoded for training."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from sqlalchemy import select
from sqlalchemy.orm import Session
from torch.utils.data import Dataset
from tqdm import tqdm

from tagger.db.schema import Image, Label, Tag
from tagger.errors import ConfigError, PermanentError
from tagger.preprocess import Preprocess
from tagger.storage import Storage, validate_key


@dataclass(frozen=True)
class LabelledSet:
    keys: list[str]
    tags: list[list[str]]

    @property
    def vocabulary(self) -> list[str]:
        return sorted({t for row in self.tags for t in row})

    def tag_counts(self) -> Counter[str]:
        return Counter(t for row in self.tags for t in row)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for key, tags in zip(self.keys, self.tags, strict=True):
            digest.update(f"{key}\t{' '.join(sorted(tags))}\n".encode())
        return digest.hexdigest()

    def split(self, valid_fraction: float) -> tuple[LabelledSet, LabelledSet]:
        """A deterministic split by key hash: the same image is held out on every run."""
        train, valid = LabelledSet([], []), LabelledSet([], [])
        for key, tags in zip(self.keys, self.tags, strict=True):
            bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            target = valid if bucket < valid_fraction else train
            target.keys.append(key)
            target.tags.append(tags)
        if not train.keys or not valid.keys:
            raise ConfigError(f"split of {len(self.keys)} rows left an empty train or validation set")
        return train, valid


def drop_rare(data: LabelledSet, min_count: int) -> tuple[LabelledSet, dict[str, int]]:
    """Remove tags seen fewer than min_count times; images left without tags stay (all negatives)."""
    counts = data.tag_counts()
    rare = {t: n for t, n in counts.items() if n < min_count}
    kept = [[t for t in tags if t not in rare] for tags in data.tags]
    return LabelledSet(list(data.keys), kept), rare


def labels_from_db(session: Session) -> tuple[LabelledSet, set[str]]:
    """Tags people confirmed (accepted suggestions and manual tags): the dataset and the storages it lives in."""
    rows = session.execute(
        select(Image.key, Image.storage_url, Tag.name)
        .join(Label, Label.image_id == Image.id)
        .join(Tag, Tag.id == Label.tag_id)
        .order_by(Image.key, Tag.name)
    ).all()
    by_key: dict[str, list[str]] = {}
    storages: set[str] = set()
    for key, storage_url, tag in rows:
        by_key.setdefault(key, []).append(tag)
        if storage_url:
            storages.add(storage_url)
    if not by_key:
        raise ConfigError("the database has no confirmed labels yet; see `tagger labels --help`")
    return LabelledSet(list(by_key), list(by_key.values())), storages


def read_labels_csv(path: Path) -> LabelledSet:
    """Read `image_id,tags` rows (a header line is optional); image_id is the storage key."""
    if not path.is_file():
        raise ConfigError(f"labels file not found: {path}")
    keys: list[str] = []
    tags: list[list[str]] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or (lineno == 1 and row[0].strip().lower() in ("image_id", "image", "id")):
                continue
            if len(row) != 2:
                raise ConfigError(f"{path}:{lineno}: expected `image_id,tags`, got {len(row)} fields")
            try:
                keys.append(validate_key(row[0].strip()))
            except PermanentError as exc:
                raise ConfigError(f"{path}:{lineno}: {exc}") from None
            tags.append(row[1].split())
    if not keys:
        raise ConfigError(f"{path} has no labelled rows")
    return LabelledSet(keys, tags)


def encode(tags: list[list[str]], vocabulary: list[str]) -> torch.Tensor:
    index = {t: i for i, t in enumerate(vocabulary)}
    target = torch.zeros((len(tags), len(vocabulary)))
    for row, names in enumerate(tags):
        for name in names:
            if name in index:
                target[row, index[name]] = 1.0
    return target


class DecodedStills(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images decoded once with the inference preprocessing, held as uint8 (small archives)."""

    def __init__(
        self,
        storage: Storage,
        data: LabelledSet,
        vocabulary: list[str],
        preprocess: Preprocess,
        *,
        threads: int = 8,
        desc: str = "decode",
    ) -> None:
        def one(key: str) -> torch.Tensor | None:
            try:
                return preprocess(storage.read(key))
            except PermanentError:
                return None

        with ThreadPoolExecutor(threads) as pool:
            decoded = list(
                tqdm(pool.map(one, data.keys), total=len(data.keys), desc=desc, unit="img", leave=False, disable=None)
            )
        keep = [i for i, t in enumerate(decoded) if t is not None]
        self.skipped = [data.keys[i] for i, t in enumerate(decoded) if t is None]
        if not keep:
            raise ConfigError("none of the labelled images could be read")
        self.keys = [data.keys[i] for i in keep]
        self.pixels = torch.stack([decoded[i] for i in keep])  # type: ignore[misc]
        self.targets = encode([data.tags[i] for i in keep], vocabulary)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pixels[index], self.targets[index]
