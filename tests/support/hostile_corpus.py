"""A generated corpus of hostile and awkward image files, each with the outcome it must have.

`expect` is either ("ok", (width, height) after EXIF transpose or None) or ("fail", reason fragment).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

MAX_BYTES = 300_000  # the e2e run sets TAGGER_MAX_IMAGE_BYTES to this
MAX_PIXELS = 20_000_000  # and TAGGER_MAX_IMAGE_PIXELS to this


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = _chunk(b"IDAT", zlib.compress(b"\x00" * 10))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + idat + _chunk(b"IEND", b"")


def _gif_declaring(width: int, height: int) -> bytes:
    header = b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00"
    image = b"\x2c" + struct.pack("<HHHH", 0, 0, width, height) + b"\x00" + b"\x02\x02\x44\x01\x00"
    return header + image + b"\x3b"


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 marker is rewritten to declare huge dimensions."""
    data = bytearray(_save(Image.new("RGB", (16, 16), (90, 120, 30)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _scene(w: int = 160, h: int = 90) -> Image.Image:
    img = Image.new("RGB", (w, h), (40, 90, 160))
    img.paste((230, 200, 40), (w // 4, h // 4, w // 2, h // 2))
    return img


def _frames(fmt: str, **kw: object) -> bytes:
    frames = [Image.new("RGB", (64, 48), c) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], **kw)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(_scene(80, 40), "JPEG", exif=exif.tobytes())


def build() -> dict[str, tuple[bytes, tuple[str, object]]]:
    good = _save(_noise(200, 150), "JPEG", quality=90)
    cmyk = _save(_scene().convert("CMYK"), "JPEG")
    sixteen = Image.fromarray((np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16))
    palette = _scene().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    floats = Image.fromarray(np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64), mode="F")
    corpus: dict[str, tuple[bytes, tuple[str, object]]] = {
        "truncated.jpg": (good[: len(good) // 2], ("fail", "corrupt or truncated")),
        "corrupt.jpg": (good[:300] + bytes(range(256)) * 8, ("fail", "corrupt or truncated")),
        "zero.jpg": (b"", ("fail", "empty file")),
        "random.jpg": (np.random.default_rng(1).bytes(4096), ("fail", "not a recognised image format")),
        "page.jpg": (b"<!doctype html><html><body><h1>Not found</h1></body></html>", ("fail", "not a recognised")),
        "bomb.png": (_png_declaring(60_000, 60_000), ("fail", "decompression bomb")),
        "bomb-ours.png": (_png_declaring(6_000, 6_000), ("fail", f"over the limit of {MAX_PIXELS}")),
        "bomb.gif": (_gif_declaring(65_000, 65_000), ("fail", "decompression bomb")),
        "bomb.jpg": (_jpeg_declaring(60_000, 60_000), ("fail", "decompression bomb")),
        "oversized.png": (_save(_noise(400, 400, 2), "PNG"), ("fail", f"over the limit of {MAX_BYTES}")),
        "not-allowed.tga": (_save(_scene(), "TGA"), ("fail", "not a recognised image format")),
        "not-allowed.pcx": (_save(_scene(), "PCX"), ("fail", "not a recognised image format")),
        "cmyk.jpg": (cmyk, ("ok", (160, 90))),
        "progressive.jpg": (_save(_scene(), "JPEG", progressive=True), ("ok", (160, 90))),
        "sixteen-bit.png": (_save(sixteen, "PNG"), ("ok", (64, 48))),
        "sixteen-bit.tif": (_save(sixteen, "TIFF"), ("ok", (64, 48))),
        "float32.tif": (_save(floats, "TIFF"), ("fail", "floating-point pixels")),
        "grey-alpha.png": (_save(_scene().convert("LA"), "PNG"), ("ok", (160, 90))),
        "palette-transparent.png": (_save(palette, "PNG", transparency=0), ("ok", (160, 90))),
        "animated.gif": (_frames("GIF", duration=100, loop=0), ("ok", (64, 48))),
        "animated.webp": (_frames("WEBP", duration=100, loop=0), ("ok", (64, 48))),
        "animated.png": (_frames("PNG", duration=100, loop=0), ("ok", (64, 48))),
        "wide.jpg": (_save(_scene(4000, 10), "JPEG"), ("ok", None)),
        # A camera JPEG Pillow reads as MPO: the picture, then a second one (a preview) in its trailer.
        "camera-mpo.jpg": (_save(_scene(), "MPO", save_all=True, append_images=[_scene(40, 20)]), ("ok", (160, 90))),
        "tall.png": (_save(_scene(10, 4000), "PNG"), ("ok", (10, 4000))),
    }
    for orientation in range(1, 9):
        upright = (40, 80) if orientation >= 5 else (80, 40)  # 5-8 swap width and height
        corpus[f"exif-{orientation}.jpg"] = (_exif(orientation), ("ok", upright))
    return corpus


def write(root: Path) -> dict[str, tuple[str, object]]:
    """Write the corpus under root/hostile/; returns key -> expected outcome."""
    (root / "hostile").mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (data, outcome) in build().items():
        (root / "hostile" / name).write_bytes(data)
        expected[f"hostile/{name}"] = outcome
    return expected
