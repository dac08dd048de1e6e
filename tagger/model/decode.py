"""Bytes to an upright RGB picture, safely: the decode every reader of images shares (workers, training,
the review app's thumbnails). No torch here, so the web app can use it.

Only an allow-list of Pillow decoders is ever opened; the header is checked (format, pixel limit,
modes) before a pixel is decoded; JPEGs decode at a reduced DCT scale through libjpeg-turbo.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from tagger.errors import ImageError

# Only these decoders are ever opened; Pillow's exotic plugins are never consulted.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

# JPEG and the camera JPEGs Pillow reads as MPO (multi-picture: a JPEG whose trailer holds more pictures,
# from Panasonic, Sony and Canon bodies); the first picture of an MPO is a plain JPEG stream.
JPEG_FORMATS = ("JPEG", "MPO")

ImageFile.LOAD_TRUNCATED_IMAGES = False

# Pillow warns between its MAX_IMAGE_PIXELS and twice that, and `_open_checked` refuses what is over the
# caller's limit itself. A per-call `warnings.catch_warnings` to turn the warning into an error would swap
# the process-wide filter list under the other decode threads (it is not thread-safe), so it is silenced once.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

try:
    import simplejpeg as _simplejpeg
except ImportError:  # a host without its wheel decodes every JPEG with Pillow
    _simplejpeg = None


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 100_000_000
    draft: bool = True  # JPEG DCT-domain downscaling; False decodes every pixel (the naive baseline)


def decode(data: bytes, *, size: int, limits: DecodeLimits = DecodeLimits()) -> Image.Image:
    """Decode bytes into an upright RGB image, at least `size` on each side where JPEG allows.

    Raises ImageError with a precise reason for anything that is not an acceptable image.
    """
    with _image_errors():
        img = _open_checked(data, limits)
        if img.format in JPEG_FORMATS and limits.draft:
            scaled = _decode_scaled_jpeg(data, img, size)
            if scaled is not None:
                return scaled
            # DCT-domain downscaling: decode at 1/2, 1/4 or 1/8 scale while staying >= size.
            img.draft("RGB", (size, size))
        img.load()
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)


def _decode_scaled_jpeg(data: bytes, checked: Image.Image, size: int) -> Image.Image | None:
    """libjpeg-turbo through simplejpeg: DCT-domain scaling to at least `size` on each side (any M/8
    scale, where Pillow's draft has 1/2, 1/4 and 1/8), 1.35x as fast as Pillow + draft (BENCHMARKS.md,
    2026-11-30 decoder comparison), the GIL released throughout.

    Only after every check Pillow made on the header (`checked`), and only for a clean stream in a
    colour space libjpeg converts itself (YCbCr, greyscale): anything it would warn about or refuse
    is left to Pillow, so which files are refused, and with what reason, stays Pillow's answer.
    None when Pillow should decode; the EXIF orientation is applied as Pillow's path applies it.
    """
    if _simplejpeg is None or checked.mode not in ("RGB", "L"):
        return None
    try:
        pixels = _simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=size, min_width=size, strict=True)
    except ValueError:
        return None
    out = Image.fromarray(pixels, "RGB")
    out.info.update(checked.info)  # exif/xmp: where exif_transpose reads the orientation
    ImageOps.exif_transpose(out, in_place=True)
    return out


def open_checked(data: bytes, limits: DecodeLimits = DecodeLimits()) -> Image.Image:
    """Parse the header only, with every check `decode` makes before it decodes a pixel.

    For decoders other than Pillow's (nvJPEG), which must never see a file Pillow would refuse.
    """
    with _image_errors():
        return _open_checked(data, limits)


def _open_checked(data: bytes, limits: DecodeLimits) -> Image.Image:
    if not data:
        raise ImageError("empty file (0 bytes)")
    if Image.MAX_IMAGE_PIXELS is not None and limits.max_pixels > Image.MAX_IMAGE_PIXELS:
        # The setting is the limit: Pillow's own guard (89M pixels) is raised to it, never lowered, so
        # threads with the same setting agree; below it, the check after the header refuses.
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
    img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageError(f"image is {width}x{height} = {width * height} pixels, over the limit of {limits.max_pixels}")
    if img.mode.startswith("F"):
        # HDR, depth maps, scientific data: no one faithful 8-bit picture, so no tags from a guessed scaling.
        raise ImageError(
            f"{img.format} holds 32-bit floating-point pixels (mode {img.mode}): no faithful 8-bit picture to tag; "
            "export it as 8- or 16-bit"
        )
    return img


@contextmanager
def _image_errors() -> Iterator[None]:
    """Turn every way Pillow says "bad file" into an ImageError with a reason a person can act on."""
    try:
        yield
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"not a recognised image format (allowed: {', '.join(ALLOWED_FORMATS)})") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"decompression bomb refused: {exc}") from None
    except Image.DecompressionBombWarning as exc:
        raise ImageError(f"decompression bomb refused: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Normalise any mode to RGB; transparency is composited onto white, 16-bit is scaled down."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        return Image.fromarray(np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")
