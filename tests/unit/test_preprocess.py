from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tagger.errors import ImageError
from tagger.model.preprocess import DecodeLimits, Normalise, Preprocess, decode


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares huge dimensions (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")
    )


def test_jpeg_is_squished_to_a_square_uint8_tensor() -> None:
    data = encode(Image.new("RGB", (400, 100), (255, 0, 0)), "JPEG")
    t = Preprocess(32)(data)
    assert t.shape == (3, 32, 32) and t.dtype.is_floating_point is False
    assert int(t[0].float().mean()) > 240 and int(t[1].float().mean()) < 15


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"\x8f\x12random bytes" * 40, "not a recognised image"),
        (b"<!doctype html><html><body>hi</body></html>", "not a recognised image"),
        (png_with_declared_size(50_000, 50_000), "decompression bomb"),  # Pillow's own guard
        (png_with_declared_size(5_000, 5_000), "over the limit of 10000000"),  # ours, tighter
    ],
)
def test_bad_inputs_fail_with_a_precise_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        decode(data, size=32, limits=DecodeLimits(max_pixels=10_000_000))


def test_truncated_jpeg_is_refused() -> None:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    data = encode(noisy, "JPEG")
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode(data[: len(data) // 2], size=32)


def test_modes_are_normalised_to_rgb() -> None:
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # fully transparent -> white background
    assert decode(encode(rgba, "PNG"), size=8).getpixel((5, 5)) == (255, 255, 255)
    grey16 = Image.fromarray(np.full((10, 10), 65535, dtype=np.uint16))
    assert decode(encode(grey16, "PNG"), size=8).getpixel((1, 1)) == (255, 255, 255)
    palette = Image.new("P", (10, 10))
    assert decode(encode(palette, "GIF"), size=8).mode == "RGB"
    cmyk = Image.new("CMYK", (10, 10), (0, 255, 255, 0))
    assert decode(encode(cmyk, "JPEG"), size=8).mode == "RGB"


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise on display
    for size in (5, 8, 40):
        out = decode(encode(img, "JPEG", exif=exif), size=size)
        assert min(out.size) >= min(size, 20)
        assert 1.8 <= out.size[1] / out.size[0] <= 2.0  # landscape 2:1 on disk, portrait once rotated


def test_libjpeg_turbo_and_pillow_decode_a_jpeg_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast JPEG path (simplejpeg) and Pillow's give the model the same input, EXIF rotation included."""
    from tagger.model import decode as decoding

    yy, xx = np.mgrid[0:300, 0:500]
    still = np.stack([xx * 255 // 500, yy * 255 // 300, 128 + 100 * np.sin(xx / 20) * np.cos(yy / 15)], -1)
    exif = Image.Exif()
    exif[0x0112] = 8
    data = encode(Image.fromarray(still.astype(np.uint8)), "JPEG", quality=90, exif=exif)
    assert decoding._simplejpeg is not None  # a dependency: the fast path is the one under test
    fast = Preprocess(64)(data).float()
    monkeypatch.setattr(decoding, "_simplejpeg", None)
    pillow = Preprocess(64)(data).float()
    assert (fast - pillow).abs().mean() < 1.0 and (fast - pillow).abs().max() <= 16
    assert decode(data, size=64).size[1] > decode(data, size=64).size[0]  # rotated to portrait


def test_normalise_uses_imagenet_statistics_per_channel() -> None:
    import torch

    from tagger.model.meta import IMAGENET_MEAN, IMAGENET_STD

    pixels = torch.tensor([0, 128, 255], dtype=torch.uint8)
    batch = pixels.view(1, 1, 3, 1).expand(1, 3, 3, 1).contiguous()  # every channel holds 0, 128 and 255
    out = Normalise()(batch)
    for c in range(3):
        expected = (pixels.float() / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[0, c, :, 0], expected, atol=1e-5), c
    assert Normalise()(batch, dtype=torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.parametrize("fmt", ["JPEG", "MPO"])
def test_camera_jpegs_are_decoded_at_a_reduced_scale(fmt: str) -> None:
    """Draft (DCT-domain downscaling) applies to MPO camera files as to plain JPEGs: 4000x3000 -> 500x375."""
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), dtype=np.uint8))
    buf = io.BytesIO()
    extra = {"save_all": True, "append_images": [img.resize((400, 300))]} if fmt == "MPO" else {}
    img.save(buf, fmt, quality=80, **extra)
    assert Image.open(io.BytesIO(buf.getvalue())).format == fmt
    assert decode(buf.getvalue(), size=224).size == (500, 375)
    assert decode(buf.getvalue(), size=224, limits=DecodeLimits(draft=False)).size == (4000, 3000)


@pytest.mark.parametrize("warning_filter", ["ignore", "error"])
def test_the_pixel_limit_is_the_settings_whatever_pillows_limit_and_warning_filters(warning_filter: str) -> None:
    """Pillow only warns between its MAX_IMAGE_PIXELS (89M) and twice that: the refusal must not hang on the
    process's warning filters, which decode threads share (production ignores the warning; pytest errors),
    and a limit set above Pillow's is the limit, not silently capped at Pillow's."""
    import warnings

    side = int(Image.MAX_IMAGE_PIXELS**0.5) + 100  # just over Pillow's limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter(warning_filter, Image.DecompressionBombWarning)
        with pytest.raises(ImageError, match="decompression bomb refused|over the limit of 10000000"):
            decode(png_with_declared_size(side, side), size=32, limits=DecodeLimits(max_pixels=10_000_000))
        # Allowed by a limit above Pillow's: this PNG is refused for its data, not for its size.
        with pytest.raises(ImageError, match="corrupt or truncated"):
            decode(png_with_declared_size(side, side), size=32, limits=DecodeLimits(max_pixels=side * side))


def test_preprocess_gives_pillows_resize_within_one_level() -> None:
    """The worker's resize (a box reduce, then torch's antialiased uint8 bilinear) gives the picture Pillow's
    BILINEAR resize with reducing_gap=3 gave (what existing models were trained on), for any scale."""
    import torch

    rng = np.random.default_rng(3)
    for shape in ((270, 480), (1080, 1920), (4000, 300), (50, 20)):  # down 2x, down 17-30x, mixed, up
        img = Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8))
        ours = Preprocess(64)(encode(img, "PNG"))
        pillow = np.array(img.resize((64, 64), Image.Resampling.BILINEAR, reducing_gap=3.0))
        assert ours.shape == (3, 64, 64) and ours.dtype == torch.uint8 and ours.is_contiguous()
        assert (ours.int() - torch.from_numpy(pillow).permute(2, 0, 1).int()).abs().max() <= 1, shape
