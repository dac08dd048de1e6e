"""`tagger sample --bursts`: shots of near-identical stills of every kind the duplicate search must group,
with each still's shot written to groups.csv, the same for the same seed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from tagger.cli import main
from tagger.sample_archive import EDITS, generate_bursts, read_groups


def _pixels(path: Path) -> np.ndarray:
    """A still as 48x36 grey pixels, so stills of other sizes compare."""
    return np.asarray(Image.open(path).convert("L").resize((48, 36)), dtype=np.float32)


def test_bursts_are_shots_of_near_identical_stills_of_every_kind(tmp_path: Path) -> None:
    stills = generate_bursts(tmp_path, 12, seed=5)
    shots = Counter(s.group for s in stills)
    assert len(shots) == 12 and min(shots.values()) >= 3 and max(shots.values()) <= 9
    assert set(Counter(s.edit for s in stills)) == set(EDITS)  # every kind of near-duplicate is there
    assert {s.key.split("/")[1] for s in stills} == {f"film_{f:02d}" for f in range(4)}  # filed by film
    first = {s.group: _pixels(tmp_path / s.key) for s in reversed(stills)}  # each shot's first still
    nearest_is_own, changed = 0, 0
    for s in stills:
        assert {t.tags for t in stills if t.group == s.group} == {s.tags}  # a shot's tags are true of all of it
        diff = {g: float(np.abs(_pixels(tmp_path / s.key) - p).mean()) for g, p in first.items()}
        own = diff.pop(s.group)
        nearest_is_own += own < min(diff.values())
        changed += own > 0
    # Nearly every still is nearest its own shot's first still in pixels (a crop of stripes can shift their
    # phase), and all but each shot's first differ from it.
    assert nearest_is_own >= 0.95 * len(stills) and changed == len(stills) - len(shots)


def test_sample_writes_groups_csv_beside_the_labels_and_the_same_seed_the_same_stills(tmp_path: Path) -> None:
    for run in ("a", "b"):
        assert main(["sample", str(tmp_path / run), "--count", "3", "--bursts", "2", "--seed", "7"]) == 0
    groups = read_groups(tmp_path / "a" / "groups.csv")
    labels = (tmp_path / "a" / "labels.csv").read_text().splitlines()[1:]
    assert sorted(groups) == sorted(line.split(",")[0] for line in labels)
    assert len({g for k, g in groups.items() if k.startswith("films/")}) == 2
    assert all(g == k for k, g in groups.items() if k.startswith("stills/"))  # a single is its own group
    for key in groups:
        assert (tmp_path / "a" / key).read_bytes() == (tmp_path / "b" / key).read_bytes()
    assert main(["sample", str(tmp_path / "c"), "--count", "0"]) == 2  # nothing to write
