"""Fetch and decode a batch of images in parallel threads; one bad image never fails the batch.

Two ways to decode. Pillow in the thread pool: every image read and decoded on the CPU (the only
way on a CPU worker). Or a device decoder (nvJPEG on a GPU): the pool reads the bytes and checks
each header, Pillow decodes the non-JPEGs and a share of the JPEGs in the pool while the device
decodes the rest of the JPEGs in one batched call, so both decoders work at once.

A batch's images have `read_timeout` seconds from the batch's start to be read (and decoded): an image
whose read has not finished by then (a hung network file, a storage server that trickles) fails alone
with that reason, and its batch-mates are tagged. Its thread is left to its read (Python cannot cancel
one); images still queued behind it are failed with the same reason rather than waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

import torch

from tagger.errors import ImageError, PermanentError, RetryableError
from tagger.storage import UNKNOWN, Blob, Fingerprint, Storage, sha256_hex
from tagger.worker.device_decode import Header, OnDevice, read_header
from tagger.worker.prometheus import IMAGE_SECONDS

# Bound once: a labelled child is a dict look-up under a lock, and these are observed for every image.
FETCH_SECONDS = IMAGE_SECONDS.labels("fetch")
DECODE_SECONDS = IMAGE_SECONDS.labels("decode")

T = TypeVar("T")


@dataclass(frozen=True)
class Item:
    """One image to load: its id, the storage it lives in and its key there."""

    image_id: int
    storage: Storage
    key: str


@dataclass(frozen=True)
class Loaded:
    image_id: int
    pixels: torch.Tensor  # CHW uint8 at the model's input size (on the device when it decoded it)
    fingerprint: Fingerprint = UNKNOWN  # what the bytes decoded were (recorded when the image is tagged)


@dataclass(frozen=True)
class Failed:
    image_id: int
    reason: str
    retryable: bool = False
    kind: str = "image"  # image, storage, transient or memory: the metrics' class of reason


def load_batch(
    items: Sequence[Item],
    *,
    preprocess: Callable[[bytes], torch.Tensor],
    pool: ThreadPoolExecutor,
    max_bytes: int,
    read_timeout: float = 60.0,
    on_device: OnDevice | None = None,
    content_hash: bool = False,
) -> tuple[list[Loaded], list[Failed]]:
    """Storage reads and decodes overlap in the pool; a bad key fails in storage before any I/O.

    `read_timeout`: seconds from now in which every image must be read (see the module's docstring).
    Each loaded image carries its bytes' fingerprint, with their SHA-256 when `content_hash`.
    """
    deadline = time.monotonic() + read_timeout

    def one(item: Item) -> Loaded | Failed:
        def work() -> Loaded:
            blob = _timed_read(item, max_bytes, content_hash)
            return Loaded(item.image_id, _timed_decode(preprocess, blob.data), blob.fingerprint)

        return _guarded(item.image_id, work)

    if on_device is None:
        outcomes = _within(items, pool, one, deadline, read_timeout)
    else:
        outcomes = _load_with_device(
            items, preprocess, pool, max_bytes, on_device, deadline, read_timeout, content_hash
        )
    loaded = [o for o in outcomes if isinstance(o, Loaded)]
    failed = [o for o in outcomes if isinstance(o, Failed)]
    return loaded, failed


def _load_with_device(
    items: Sequence[Item],
    preprocess: Callable[[bytes], torch.Tensor],
    pool: ThreadPoolExecutor,
    max_bytes: int,
    on_device: OnDevice,
    deadline: float,
    read_timeout: float,
    content_hash: bool,
) -> list[Loaded | Failed]:
    device = on_device.decoder.device

    def fetch(item: Item) -> tuple[Blob, Header] | Failed:
        def read() -> tuple[Blob, Header]:
            blob = _timed_read(item, max_bytes, content_hash)
            return blob, read_header(blob.data, on_device.limits)

        return _guarded(item.image_id, read)

    def pillow(image_id: int, blob: Blob) -> Loaded | Failed:
        def work() -> Loaded:
            pixels = _timed_decode(preprocess, blob.data).to(device, non_blocking=True)
            return Loaded(image_id, pixels, blob.fingerprint)

        return _guarded(image_id, work)

    outcomes: dict[int, Loaded | Failed] = {}
    jpegs: list[tuple[int, Blob, Header]] = []
    on_cpu: dict[int, Future[Loaded | Failed]] = {}
    for item, fetched in zip(items, _within(items, pool, fetch, deadline, read_timeout), strict=True):
        if isinstance(fetched, Failed):
            outcomes[item.image_id] = fetched
        elif fetched[1].device_decodable:
            jpegs.append((item.image_id, *fetched))
        else:
            on_cpu[item.image_id] = pool.submit(pillow, item.image_id, fetched[0])
    cpu_jpegs = round(len(jpegs) * on_device.cpu_share)
    for image_id, blob, _ in jpegs[:cpu_jpegs]:
        on_cpu[image_id] = pool.submit(pillow, image_id, blob)
    gpu_jpegs = jpegs[cpu_jpegs:]
    if gpu_jpegs:
        started = time.perf_counter()
        with on_device.lock:
            pixels = on_device.decoder([b.data for _, b, _ in gpu_jpegs], [h for _, _, h in gpu_jpegs])
        each = (time.perf_counter() - started) / len(gpu_jpegs)  # one batched call: its share per image
        for _ in gpu_jpegs:
            DECODE_SECONDS.observe(each)
        for (image_id, blob, _), px in zip(gpu_jpegs, pixels, strict=True):
            if px is None:  # the device refused it: Pillow decodes it or says precisely why not
                on_cpu[image_id] = pool.submit(pillow, image_id, blob)
            else:
                outcomes[image_id] = Loaded(image_id, px, blob.fingerprint)
    for image_id, future in on_cpu.items():
        outcomes[image_id] = future.result()
    return [outcomes[item.image_id] for item in items]


def _within(
    items: Sequence[Item],
    pool: ThreadPoolExecutor,
    work: Callable[[Item], T | Failed],
    deadline: float,
    read_timeout: float,
) -> list[T | Failed]:
    """`work` on every item in the pool, in order; what has not finished by `deadline` is that item's Failed."""
    futures = [pool.submit(work, item) for item in items]
    wait(futures, timeout=max(0.0, deadline - time.monotonic()))
    late = f"not read within {read_timeout:g} s (TAGGER_READ_TIMEOUT): a hung file, pipe or storage server"
    out: list[T | Failed] = []
    for item, future in zip(items, futures, strict=True):
        if future.done():
            out.append(future.result())
        else:
            future.cancel()  # still queued: never started; running: left to its read
            out.append(Failed(item.image_id, late, kind="storage"))
    return out


def _timed_read(item: Item, max_bytes: int, content_hash: bool) -> Blob:
    """The image's bytes and their fingerprint (with the SHA-256, hashed in this pool thread, when asked)."""
    started = time.perf_counter()
    blob = item.storage.fetch(item.key, max_bytes=max_bytes)
    if content_hash:
        blob = blob._replace(fingerprint=blob.fingerprint._replace(sha256=sha256_hex(blob.data)))
    FETCH_SECONDS.observe(time.perf_counter() - started)
    return blob


def _timed_decode(preprocess: Callable[[bytes], torch.Tensor], data: bytes) -> torch.Tensor:
    started = time.perf_counter()
    pixels = preprocess(data)
    DECODE_SECONDS.observe(time.perf_counter() - started)
    return pixels


def _guarded(image_id: int, work: Callable[[], T]) -> T | Failed:
    """Run one image's work; any way it can fail becomes that image's Failed with a reason."""
    try:
        return work()
    except ImageError as exc:
        return Failed(image_id, str(exc))
    except PermanentError as exc:
        return Failed(image_id, str(exc), kind="storage")
    except RetryableError as exc:
        return Failed(image_id, str(exc), retryable=True, kind="transient")
    except MemoryError:
        return Failed(image_id, "out of memory while decoding", kind="memory")
