"""The device decode path (nvJPEG on CUDA) on CPU: torchvision's libjpeg behind the same code.

It must agree with the Pillow path on every file of the hostile corpus (same images decoded,
same failures with the same reasons, nearly the same pixels), and it must never hand the device
a file that Pillow's header checks refuse.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tagger.model.preprocess import DecodeLimits, Preprocess, decode
from tagger.storage import LocalStorage
from tagger.worker.device_decode import DeviceDecoder, Header, OnDevice, orient, read_header
from tagger.worker.loader import Failed, Item, Loaded, load_batch
from tests.support import hostile_corpus

SIZE = 32
LIMITS = DecodeLimits(max_pixels=hostile_corpus.MAX_PIXELS)
CPU = torch.device("cpu")


class RecordingDecoder(DeviceDecoder):
    """The real decoder, noting what it was handed."""

    def __init__(self) -> None:
        super().__init__(SIZE, CPU)
        self.seen: list[Header] = []

    def __call__(self, blobs: list[bytes], headers: list[Header]) -> list[torch.Tensor | None]:
        self.seen.extend(headers)
        return super().__call__(blobs, headers)


def load(root: Path, keys: list[str], on_device: OnDevice | None, size: int = SIZE) -> dict[str, Loaded | Failed]:
    """Load `keys` through the worker's loader, by key; `on_device=None` is the Pillow path."""
    storage = LocalStorage(root)
    with ThreadPoolExecutor(4) as pool:
        loaded, failed = load_batch(
            [Item(i, storage, key) for i, key in enumerate(keys, start=1)],
            preprocess=Preprocess(size, limits=LIMITS),
            pool=pool,
            max_bytes=hostile_corpus.MAX_BYTES,
            on_device=on_device,
        )
    return {keys[o.image_id - 1]: o for o in [*loaded, *failed]}


def test_the_device_path_agrees_with_pillow_on_every_hostile_file(tmp_path: Path) -> None:
    expected = hostile_corpus.write(tmp_path)
    keys = sorted(expected)
    decoder = RecordingDecoder()
    pillow = load(tmp_path, keys, None)
    device = load(tmp_path, keys, OnDevice(decoder, LIMITS))

    assert set(device) == set(keys)
    for key in keys:
        ours, theirs = device[key], pillow[key]
        assert type(ours) is type(theirs), (key, ours, theirs)
        if isinstance(ours, Failed):
            assert ours.reason == theirs.reason  # type: ignore[union-attr]
            assert str(expected[key][1]) in ours.reason
        else:
            assert ours.pixels.shape == (3, SIZE, SIZE) and ours.pixels.dtype == torch.uint8
            diff = (ours.pixels.int() - theirs.pixels.int()).abs().float().mean().item()  # type: ignore[union-attr]
            assert diff < 3.0, (key, diff)
    # Only colour JPEGs whose headers passed reach the device: no bomb, no CMYK, no PNG; camera MPOs do.
    assert all(h.format in ("JPEG", "MPO") and h.mode in ("RGB", "L") for h in decoder.seen)
    assert any(h.format == "MPO" for h in decoder.seen)
    assert all(h.width * h.height <= hostile_corpus.MAX_PIXELS for h in decoder.seen)
    assert len(decoder.seen) >= 12  # the EXIF set, progressive, wide, and the corrupt ones it must give back


def test_every_exif_orientation_matches_pillow_exactly() -> None:
    from torchvision.io import ImageReadMode, decode_jpeg

    corpus = hostile_corpus.build()
    for orientation in range(1, 9):
        data = corpus[f"exif-{orientation}.jpg"][0]
        header = read_header(data, LIMITS)
        assert header.orientation == orientation
        raw = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        ours = orient(raw, header.orientation).permute(1, 2, 0).numpy()
        assert np.array_equal(ours, np.asarray(decode(data, size=10_000, limits=LIMITS))), orientation


def test_a_share_of_the_jpegs_is_decoded_by_pillow_beside_the_device(tmp_path: Path) -> None:
    from tests.conftest import write_stills

    keys = write_stills(tmp_path, 10)
    decoder = RecordingDecoder()
    outcomes = load(tmp_path, keys, OnDevice(decoder, LIMITS, cpu_share=0.3))
    assert len(decoder.seen) == 7
    assert all(isinstance(o, Loaded) for o in outcomes.values()) and len(outcomes) == 10


def test_a_film_still_decoded_on_the_device_is_close_to_pillows() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (9, 16, 3), dtype=np.uint8)
    still = Image.fromarray(base).resize((1920, 1080), Image.Resampling.BICUBIC)  # smooth, like a frame
    buf = io.BytesIO()
    still.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    ours = DeviceDecoder(224, CPU)([data], [read_header(data, LIMITS)])[0]
    theirs = Preprocess(224, limits=DecodeLimits(draft=True))(data)
    assert ours is not None
    assert (ours.int() - theirs.int()).abs().float().mean().item() < 2.0
