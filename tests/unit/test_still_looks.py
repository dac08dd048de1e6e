"""What a still looks like is decided once (tagger.model.decode): transparency of every kind on white, an
animation's middle frame, and the true reason for JPEG codings that cannot be decoded."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tagger.errors import ImageError
from tagger.model.decode import ANIMATION_FRAMES, decode

RED = (200, 0, 0)


def _encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def _logo(mode: str, *, background: object, mark: object) -> Image.Image:
    """A 40x40 picture whose border is `background` and whose middle square is `mark`."""
    img = Image.new(mode, (40, 40), background)  # type: ignore[arg-type]
    img.paste(mark, (10, 10, 30, 30))  # type: ignore[arg-type]
    return img


def _sixteen_bit() -> Image.Image:
    arr = np.zeros((40, 40), np.uint16)
    arr[10:30, 10:30] = 40000
    return Image.fromarray(arr)


def _palette() -> Image.Image:
    return _logo("RGB", background=(0, 0, 0), mark=RED).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)


TRANSPARENT = {
    "RGBA alpha": lambda: _encode(_logo("RGBA", background=(0, 0, 0, 0), mark=(*RED, 255)), "PNG"),
    "LA alpha": lambda: _encode(_logo("LA", background=(0, 0), mark=(128, 255)), "PNG"),
    "WebP alpha": lambda: _encode(_logo("RGBA", background=(0, 0, 0, 0), mark=(*RED, 255)), "WEBP", lossless=True),
    "RGB tRNS": lambda: _encode(_logo("RGB", background=(0, 0, 0), mark=RED), "PNG", transparency=(0, 0, 0)),
    "grey tRNS": lambda: _encode(_logo("L", background=0, mark=128), "PNG", transparency=0),
    "16-bit grey tRNS": lambda: _encode(_sixteen_bit(), "PNG", transparency=0),
    "palette PNG": lambda: _encode(_palette(), "PNG", transparency=_palette().getpixel((0, 0))),
    "palette GIF": lambda: _encode(_palette(), "GIF", transparency=_palette().getpixel((0, 0))),
}


@pytest.mark.parametrize("kind", list(TRANSPARENT))
def test_every_kind_of_transparency_comes_out_white(kind: str) -> None:
    """The transparent border was stored black: it must come out white, never black, whatever the kind."""
    still = decode(TRANSPARENT[kind](), size=32)
    assert still.mode == "RGB"
    assert still.getpixel((0, 0)) == (255, 255, 255)
    assert still.getpixel((20, 20)) != (255, 255, 255)  # the mark is still there


def _fade_in(count: int) -> list[Image.Image]:
    """Frame 0 blank white, then the red mark appearing: a title card's fade-in."""
    return [Image.new("RGB", (40, 40), (255, 255, 255))] + [
        _logo("RGB", background=(255, 255, 255), mark=(200, 255 - 255 * i // count, 255 - 255 * i // count))
        for i in range(1, count)
    ]


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"], ids=["GIF", "animated WebP", "APNG"])
@pytest.mark.parametrize("count", [2, 9, ANIMATION_FRAMES + 20])
def test_an_animation_is_tagged_from_its_middle_frame_not_a_blank_first(fmt: str, count: int) -> None:
    frames = _fade_in(count)
    data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=40, loop=0, lossless=True)
    still = np.asarray(decode(data, size=32), dtype=int)
    expected = np.asarray(frames[min(count, ANIMATION_FRAMES) // 2], dtype=int)
    assert still[20, 20].tolist() != [255, 255, 255]  # not the blank first frame
    assert np.abs(still[20, 20] - expected[20, 20]).max() <= 8  # the middle frame (GIF's palette rounds)


def _baseline_jpeg(**options: object) -> bytes:
    return _encode(_logo("RGB", background=(30, 60, 90), mark=RED), "JPEG", quality=90, **options)


def _with_frame_header(data: bytes, *, marker: int | None = None, bits: int | None = None) -> bytes:
    """The same stream with its start-of-frame marker or sample precision changed (ITU T.81 B.2.2)."""
    out = bytearray(data)
    at = next(i for i in range(2, len(out) - 1) if out[i] == 0xFF and out[i + 1] in (0xC0, 0xC2))
    if marker is not None:
        out[at + 1] = marker
    if bits is not None:
        out[at + 4] = bits
    return bytes(out)


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (lambda: _with_frame_header(_baseline_jpeg(), bits=12), "a 12-bit JPEG: only 8-bit JPEGs can be decoded"),
        (lambda: _with_frame_header(_baseline_jpeg(progressive=True), bits=12), "a 12-bit JPEG"),
        (lambda: _with_frame_header(_baseline_jpeg(), bits=16), "a 16-bit JPEG"),
        (lambda: _with_frame_header(_baseline_jpeg(), marker=0xC3), r"a lossless JPEG \(8-bit\)"),
        (lambda: _with_frame_header(_baseline_jpeg(), marker=0xC3, bits=12), r"a lossless JPEG \(12-bit\)"),
        (lambda: _with_frame_header(_baseline_jpeg(), marker=0xC5), "a hierarchical JPEG"),
        (lambda: _with_frame_header(_baseline_jpeg(), marker=0xCB), r"a lossless \(arithmetic\) JPEG"),
    ],
    ids=["12-bit", "12-bit progressive", "16-bit", "lossless", "lossless 12-bit", "hierarchical", "lossless arith"],
)
def test_a_jpeg_coding_that_cannot_be_decoded_is_named(stream, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImageError, match=reason):
        decode(stream(), size=32)


def test_other_bad_files_keep_their_reasons() -> None:
    good = _baseline_jpeg()
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode(good[: len(good) // 2], size=32)
    with pytest.raises(ImageError, match="not a recognised image format"):
        decode(b"\xff\xd8 not really a jpeg at all", size=32)
    assert decode(good, size=32).size[0] >= 32  # and an 8-bit baseline JPEG decodes
