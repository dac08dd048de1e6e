"""Fetch and decode a batch of images in parallel threads; one bad image never fails the batch.

Two ways to decode. Pillow in the thread pool: every image read and decoded on the CPU (the only
way on a CPU worker). Or a device decoder (nvJPEG on a GPU): the pool reads the bytes and checks
each header, Pillow decodes the non-JPEGs and a share of the JPEGs in the pool while the device
decodes the rest of the JPEGs in one batched call, so both decoders work at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import torch

from tagger.errors import PermanentError, RetryableError
from tagger.storage import Storage
from tagger.worker.device_decode import Header, OnDevice, read_header

T = TypeVar("T")


@dataclass(frozen=True)
class Loaded:
    key: str
    pixels: torch.Tensor  # CHW uint8 at the model's input size (on the device when it decoded it)


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
    on_device: OnDevice | None = None,
) -> tuple[list[Loaded], list[Failed]]:
    """Storage reads and decodes overlap in the pool; a bad key fails in storage before any I/O."""

    def one(key: str) -> Loaded | Failed:
        return _guarded(key, lambda: Loaded(key, preprocess(storage.read(key, max_bytes=max_bytes))))

    if on_device is None:
        outcomes = list(pool.map(one, keys))
    else:
        outcomes = _load_with_device(storage, keys, preprocess, pool, max_bytes, on_device)
    loaded = [o for o in outcomes if isinstance(o, Loaded)]
    failed = [o for o in outcomes if isinstance(o, Failed)]
    return loaded, failed


def _load_with_device(
    storage: Storage,
    keys: Sequence[str],
    preprocess: Callable[[bytes], torch.Tensor],
    pool: ThreadPoolExecutor,
    max_bytes: int,
    on_device: OnDevice,
) -> list[Loaded | Failed]:
    device = on_device.decoder.device

    def fetch(key: str) -> tuple[bytes, Header] | Failed:
        def read() -> tuple[bytes, Header]:
            data = storage.read(key, max_bytes=max_bytes)
            return data, read_header(data, on_device.limits)

        return _guarded(key, read)

    def pillow(key: str, data: bytes) -> Loaded | Failed:
        return _guarded(key, lambda: Loaded(key, preprocess(data).to(device, non_blocking=True)))

    outcomes: dict[str, Loaded | Failed] = {}
    jpegs: list[tuple[str, bytes, Header]] = []
    on_cpu: dict[str, Future[Loaded | Failed]] = {}
    for key, fetched in zip(keys, pool.map(fetch, keys), strict=True):
        if isinstance(fetched, Failed):
            outcomes[key] = fetched
        elif fetched[1].device_decodable:
            jpegs.append((key, *fetched))
        else:
            on_cpu[key] = pool.submit(pillow, key, fetched[0])
    cpu_jpegs = round(len(jpegs) * on_device.cpu_share)
    for key, data, _ in jpegs[:cpu_jpegs]:
        on_cpu[key] = pool.submit(pillow, key, data)
    gpu_jpegs = jpegs[cpu_jpegs:]
    if gpu_jpegs:
        with on_device.lock:
            pixels = on_device.decoder([d for _, d, _ in gpu_jpegs], [h for _, _, h in gpu_jpegs])
        for (key, data, _), px in zip(gpu_jpegs, pixels, strict=True):
            if px is None:  # the device refused it: Pillow decodes it or says precisely why not
                on_cpu[key] = pool.submit(pillow, key, data)
            else:
                outcomes[key] = Loaded(key, px)
    for key, future in on_cpu.items():
        outcomes[key] = future.result()
    return [outcomes[key] for key in keys]


def _guarded(key: str, work: Callable[[], T]) -> T | Failed:
    """Run one image's work; any way it can fail becomes that image's Failed with a reason."""
    try:
        return work()
    except PermanentError as exc:
        return Failed(key, str(exc))
    except RetryableError as exc:
        return Failed(key, str(exc), retryable=True)
    except MemoryError:
        return Failed(key, "out of memory while decoding")
