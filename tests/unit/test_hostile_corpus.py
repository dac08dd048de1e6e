"""Every file of the hostile corpus is either decoded to RGB (upright) or failed with a precise reason,
in-process (through a real worker: tests/system/test_hostile_corpus.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagger.errors import ImageError
from tagger.model.preprocess import DecodeLimits, Preprocess, decode
from tagger.storage import LocalStorage
from tests.support import hostile_corpus

CORPUS = hostile_corpus.build()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_hostile_file_decodes_upright_or_fails_precisely(name: str, tmp_path: Path) -> None:
    data, (outcome, detail) = CORPUS[name]
    (tmp_path / name).write_bytes(data)
    limits = DecodeLimits(max_pixels=hostile_corpus.MAX_PIXELS)
    if outcome == "fail":
        with pytest.raises(ImageError, match=str(detail)):
            blob = LocalStorage(tmp_path).read(name, max_bytes=hostile_corpus.MAX_BYTES)
            decode(blob, size=32, limits=limits)
        return
    img = decode(data, size=10_000, limits=limits)  # a large size: no JPEG draft, so sizes are exact
    assert img.mode == "RGB"
    if detail is not None:
        assert img.size == detail
    tensor = Preprocess(32, limits=limits)(data)
    assert tensor.shape == (3, 32, 32)


def test_exif_orientation_puts_the_bright_patch_where_a_viewer_sees_it() -> None:
    upright = decode(CORPUS["exif-1.jpg"][0], size=10_000)
    turned = decode(CORPUS["exif-6.jpg"][0], size=10_000)  # 6: rotate 90 degrees clockwise to view
    assert upright.size == (80, 40) and turned.size == (40, 80)
    assert upright.getpixel((30, 15))[0] > 150  # the yellow patch at the top-left quarter
    assert turned.getpixel((40 - 1 - 15, 30))[0] > 150
