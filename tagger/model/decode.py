"""Bytes to an upright RGB picture, safely: the decode every reader of images shares (workers, training,
the review app's thumbnails). No torch here, so the web app can use it.

Only an allow-list of Pillow decoders is ever opened; the header is checked (format, pixel limit,
modes) before a pixel is decoded; JPEGs decode at a reduced DCT scale through libjpeg-turbo.

What a still looks like is decided here, once:
- every kind of transparency (an alpha channel, a palette's transparent entries, PNG `tRNS` in an RGB or
  greyscale picture, 8- or 16-bit) is composited onto white;
- an animation (GIF, WebP, APNG) is tagged from its middle frame, counting at most its first 100 frames,
  so a fade-in from a blank first frame is not what gets tagged; MPO's extra pictures are not frames, so
  a camera's MPO is its first picture;
- 16-bit pixels are scaled to 8; 32-bit floating-point pixels are refused;
- JPEGs that are not 8-bit DCT (12- and 16-bit, lossless, hierarchical) are refused as such.
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

# An animation is tagged from frame min(n_frames, ANIMATION_FRAMES) // 2 (see the module's docstring).
ANIMATION_FRAMES = 100
ANIMATED_FORMATS = ("GIF", "WEBP", "PNG")

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
    with _image_errors(data):
        img = _open_checked(data, limits)
        if img.format in ANIMATED_FORMATS and getattr(img, "is_animated", False):
            img.seek(min(getattr(img, "n_frames", 1), ANIMATION_FRAMES) // 2)
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
    with _image_errors(data):
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
def _image_errors(data: bytes) -> Iterator[None]:
    """Turn every way Pillow says "bad file" into an ImageError with a reason a person can act on."""
    try:
        yield
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"decompression bomb refused: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # UnidentifiedImageError is an OSError
        why = unsupported_jpeg_coding(data)
        if why is not None:
            raise ImageError(why) from None
        if isinstance(exc, UnidentifiedImageError):
            raise ImageError(f"not a recognised image format (allowed: {', '.join(ALLOWED_FORMATS)})") from None
        raise ImageError(f"corrupt or truncated image: {exc}") from None


# Start-of-frame markers (ITU T.81, table B.1) of JPEG codings Pillow's libjpeg does not decode.
_SOF_CODINGS = {
    0xC3: "lossless", 0xC5: "hierarchical", 0xC6: "hierarchical progressive", 0xC7: "hierarchical lossless",
    0xCB: "lossless (arithmetic)", 0xCD: "hierarchical (arithmetic)", 0xCE: "hierarchical progressive (arithmetic)",
    0xCF: "hierarchical lossless (arithmetic)",
}  # fmt: skip
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC9, 0xCA, *_SOF_CODINGS})


def unsupported_jpeg_coding(data: bytes) -> str | None:
    """Why a JPEG stream cannot be decoded when its coding is the reason (12- or 16-bit samples, lossless or
    hierarchical), read from its start-of-frame header; None for anything else, including a non-JPEG.

    Called only after Pillow refused a file, so the usual path pays nothing for it.
    """
    if not data.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None  # not at a marker: a corrupt stream, Pillow's reason stands
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            at += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _SOF_MARKERS:
            if at + 5 > len(data):
                return None
            bits = data[at + 4]
            if marker in _SOF_CODINGS:
                return (
                    f"a {_SOF_CODINGS[marker]} JPEG ({bits}-bit): only 8-bit baseline, extended and progressive "
                    "JPEGs can be decoded; export it as an 8-bit JPEG, or as PNG or TIFF"
                )
            if bits != 8:
                return (
                    f"a {bits}-bit JPEG: only 8-bit JPEGs can be decoded; export it as an 8-bit JPEG, or as a "
                    "16-bit PNG or TIFF to keep its depth"
                )
            return None
        at += 2 + length
    return None


def to_rgb(img: Image.Image) -> Image.Image:
    """Normalise any mode to RGB: every kind of transparency is composited onto white, 16-bit is scaled down."""
    transparency = img.info.get("transparency")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        grey = Image.fromarray(np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8), "L")
        if not isinstance(transparency, int):
            return grey.convert("RGB")
        # PNG tRNS in 16-bit greyscale: the one sample value that is transparent
        alpha = Image.fromarray(np.where(np.asarray(img) == transparency, 0, 255).astype(np.uint8), "L")
        img = Image.merge("LA", (grey, alpha))
    elif transparency is not None or img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # a palette's transparent entries, or tRNS in RGB or L, become alpha
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")
