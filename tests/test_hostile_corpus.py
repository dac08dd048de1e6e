"""Every file of the hostile corpus is either decoded to RGB (upright) or failed with a precise reason,
in-process and through a real worker that never dies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.errors import ImageError
from tagger.model.preprocess import DecodeLimits, Preprocess, decode
from tagger.storage import LocalStorage
from tests import hostile_corpus
from tests.conftest import make_model, make_settings
from tests.test_e2e import tagger

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


@pytest.mark.e2e
@pytest.mark.parametrize(
    "pipeline",
    [
        {},
        # The GPU worker's shape on CPU: one process, 3 batches in flight, JPEGs decoded by torchvision.
        {"worker_pool": "threads", "worker_concurrency": 3, "decoder": "device", "batch_size": 4},
    ],
    ids=["prefork-pillow", "threads-device-decode"],
)
def test_a_real_worker_tags_or_fails_every_hostile_file_and_survives(tmp_path: Path, pipeline: dict) -> None:  # type: ignore[type-arg]
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'tagger.db'}",
        max_image_bytes=hostile_corpus.MAX_BYTES,
        max_image_pixels=hostile_corpus.MAX_PIXELS,
        **pipeline,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    make_model(settings, make_sessionmaker(engine))
    engine.dispose()
    expected = hostile_corpus.write(tmp_path / "archive")
    result = tagger(settings, "tag", str(tmp_path / "archive"), "--all-files", "--wait", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    reasons = {f["key"]: f["reason"] for f in report["failures"]}
    fails = {k: d for k, (o, d) in expected.items() if o == "fail"}
    assert set(reasons) == set(fails)
    for key, fragment in fails.items():
        assert str(fragment) in reasons[key], (key, reasons[key])
    assert report["done"] == len(expected) - len(fails) and report["total"] == len(expected)
