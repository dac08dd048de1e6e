"""Labelled stills for training: rare tags, targets, and images decoded once with the inference preprocessing."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from tagger.errors import ConfigError, PermanentError
from tagger.labels import LabelledSet
from tagger.model.preprocess import Preprocess
from tagger.storage import open_storage
from tagger.training.preflight import drop_rare  # noqa: F401  (where it was)


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
        data: LabelledSet,
        vocabulary: list[str],
        preprocess: Preprocess,
        *,
        threads: int = 8,
        desc: str = "decode",
    ) -> None:
        """`data` names each image's storage (LabelledSet.storage_urls); each storage is opened once."""
        storages = {url: open_storage(url) for url in dict.fromkeys(data.storage_urls)}

        def one(index: int) -> torch.Tensor | None:
            try:
                return preprocess(storages[data.storage_urls[index]].read(data.keys[index]))
            except PermanentError:
                return None

        with ThreadPoolExecutor(threads) as pool:
            decoded = list(
                tqdm(
                    pool.map(one, range(len(data.keys))),
                    total=len(data.keys),
                    desc=desc,
                    unit="img",
                    leave=False,
                    disable=None,
                )
            )
        keep = [i for i, t in enumerate(decoded) if t is not None]
        self.skipped = [data.keys[i] for i, t in enumerate(decoded) if t is None]
        if not keep:
            raise ConfigError(f"none of the {len(data.keys)} labelled images could be read, e.g. {data.keys[:3]}")
        self.keys = [data.keys[i] for i in keep]
        self.storage_urls = [data.storage_urls[i] for i in keep]
        self.pixels = torch.stack([decoded[i] for i in keep])  # type: ignore[misc]
        self.targets = encode([data.tags[i] for i in keep], vocabulary)

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, rows: list[int]) -> DecodedStills:
        """These rows only (the folds of `tagger train --folds`), sharing nothing mutable with the whole."""
        part = copy.copy(self)
        part.pixels, part.targets = self.pixels[rows], self.targets[rows]
        part.keys = [self.keys[i] for i in rows]
        part.storage_urls = [self.storage_urls[i] for i in rows]
        return part

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pixels[index], self.targets[index]
