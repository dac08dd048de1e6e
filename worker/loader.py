"""Fetch and decode a batch of images in parallel threads; one bad image never fails the batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from tagger.errors import PermanentError, RetryableError
from tagger.storage import Storage


@dataclass(frozen=True)
class Loaded:
    key: str
    pixels: torch.Tensor  # CHW uint8 at the model's input size


@dataclass(frozen=True)
class Failed:
    key: str
    reason: str
    retryable: bool = False


def load_batch(
    storage: Storage,
    keys: Sequence[str],
    *,
    preprocess: Callable[[bytes], torch.Tensor],
    pool: ThreadPoolExecutor,
    max_bytes: int,
) -> tuple[list[Loaded], list[Failed]]:
    """Storage reads and Pillow decodes overlap in the pool; a bad key fails in storage before any I/O."""
    failed: list[Failed] = []

    def one(key: str) -> Loaded | Failed:
        try:
            return Loaded(key, preprocess(storage.read(key, max_bytes=max_bytes)))
        except PermanentError as exc:
            return Failed(key, str(exc))
        except RetryableError as exc:
            return Failed(key, str(exc), retryable=True)
        except MemoryError:
            return Failed(key, "out of memory while decoding")

    loaded: list[Loaded] = []
    for outcome in pool.map(one, keys):
        if isinstance(outcome, Loaded):
            loaded.append(outcome)
        else:
            failed.append(outcome)
    return loaded, failed
