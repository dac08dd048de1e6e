"""A held-out split that cannot leak (tagger.training.groups): near-identical stills found by their
fingerprints, and keys a --group-by pattern names alike, stay on one side; the key-hash split leaks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tagger.errors import ConfigError, PermanentError
from tagger.labels import LabelledSet
from tagger.sample_archive import generate, generate_bursts
from tagger.training.groups import crossing, fingerprint, group_labelled


@pytest.fixture(scope="module")
def bursts(tmp_path_factory: pytest.TempPathFactory) -> tuple[LabelledSet, dict[str, str]]:
    root = tmp_path_factory.mktemp("bursts")
    stills = generate(root, 60, seed=4) + generate_bursts(root, 30, seed=4)
    labelled = LabelledSet([s.key for s in stills], [list(s.tags) for s in stills]).under(root.as_uri())
    return labelled, {s.key: s.group or s.key for s in stills}


def test_the_group_split_puts_no_near_duplicate_pair_across_and_the_key_hash_split_does(
    bursts: tuple[LabelledSet, dict[str, str]],
) -> None:
    labelled, truth = bursts
    near = group_labelled(labelled, sessions=None, threshold=0.95)
    assert near.pairs and "fingerprints" in near.source
    true_found = sum(truth[a] == truth[b] for a, b in near.pairs)
    assert true_found >= 0.8 * len(near.pairs)  # most pairs the fingerprints join are of one shot
    train, valid = near.labelled.split(0.25)
    assert crossing(near.pairs, valid.keys) == 0 and len(valid.keys) > 0.1 * len(labelled.keys)
    assert not {near.labelled.groups[labelled.keys.index(k)] for k in valid.keys} & set(train.groups)
    _, by_key = near.labelled.split(0.25, by_key=True)
    assert crossing(near.pairs, by_key.keys) > 0.1 * len(near.pairs)  # what the old split leaked
    again = group_labelled(labelled, sessions=None, threshold=0.95).labelled.split(0.25)[1]
    assert again.keys == valid.keys  # the same images are held out on every run


def test_group_by_keeps_each_films_folder_on_one_side(bursts: tuple[LabelledSet, dict[str, str]]) -> None:
    labelled, _ = bursts
    near = group_labelled(labelled, sessions=None, threshold=0.95, group_by=r"^films/([^/]+)/")
    train, valid = near.labelled.split(0.5)
    films = {
        side: {k.split("/")[1] for k in s.keys if k.startswith("films/")} for side, s in (("t", train), ("v", valid))
    }
    assert not films["t"] & films["v"] and len(films["t"] | films["v"]) == 4  # no film on both sides
    with pytest.raises(ConfigError, match="is not a regular expression"):
        group_labelled(labelled, sessions=None, threshold=0.95, group_by="films/(")


def test_a_fingerprint_ignores_size_quality_and_brightness_but_not_content() -> None:
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize((160, 120))
    other = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize((160, 120))

    def jpeg(img: Image.Image, quality: int = 90) -> bytes:
        out = io.BytesIO()
        img.save(out, "JPEG", quality=quality)
        return out.getvalue()

    print_ = fingerprint(jpeg(base))
    for copy in (jpeg(base, 40), jpeg(base.resize((96, 72))), jpeg(base.point(lambda v: min(255, v + 20)))):
        assert float(fingerprint(copy) @ print_) > 0.95
    assert float(fingerprint(jpeg(other)) @ print_) < 0.5
    with pytest.raises(PermanentError):
        fingerprint(b"not an image")


def test_split_keeps_each_group_whole_and_refuses_a_split_with_an_empty_side() -> None:
    keys = [f"k{i}" for i in range(40)]
    groups = [f"g{i // 4}" for i in range(40)]
    labelled = LabelledSet(keys, [["a"]] * 40, groups=groups)
    train, valid = labelled.split(0.3)
    assert set(train.groups).isdisjoint(valid.groups) and len(train.keys) + len(valid.keys) == 40
    with pytest.raises(ConfigError, match=r"\(1 groups of near-duplicates\)"):
        LabelledSet(keys, [["a"]] * 40, groups=["one"] * 40).split(0.3)


def test_the_split_by_key_is_the_old_split(tmp_path: Path) -> None:
    keys = [f"k{i}" for i in range(50)]
    plain = LabelledSet(keys, [["a"]] * 50)
    grouped = LabelledSet(keys, [["a"]] * 50, groups=["x"] * 50)
    assert plain.split(0.2)[1].keys == grouped.split(0.2, by_key=True)[1].keys
