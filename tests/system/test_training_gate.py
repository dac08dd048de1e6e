"""The promotion gate, for real: tiny candidates within or beyond its margin, forced, or dropping a tag."""

from __future__ import annotations

import json
from pathlib import Path

from tagger.settings import Settings
from tests.support.cli import tagger
from tests.support.training import SMALL, train


def test_the_gate_promotes_within_its_margin_force_overrides_it_and_a_dropped_tag_holds_a_candidate_back(
    archive: Path, sqlite_settings: Settings, tmp_path: Path
) -> None:
    """One walk through the gate (each step a real `tagger train`): the first model is activated; a candidate
    within its margin is promoted; one beyond it is refused, and --force activates it anyway. Then labels
    without one tag make a candidate that cannot suggest it: the gate compares the tags both know, holds it
    back naming the dropped tag, and once it is activated by hand a `missing` query for that tag, which
    could never be satisfied, is refused."""
    from tagger.sample_archive import TAGS

    untrained = [*SMALL, "--epochs", "1", "--lr", "1e-9", "--json"]
    first = json.loads(train(sqlite_settings, archive, *untrained, "--seed", "1").stdout)
    assert first["activated"] and first["gate"]["reason"] == "no model is active yet"
    within = json.loads(train(sqlite_settings, archive, *untrained, "--seed", "2", "--gate-margin", "1").stdout)
    assert within["gate"]["promote"] and within["activated"]  # F2 >= active's - 1 always holds
    assert within["gate"]["active_version"] == first["version"]
    forced = json.loads(
        train(sqlite_settings, archive, *untrained, "--seed", "3", "--gate-margin", "-1", "--force").stdout
    )
    assert not forced["gate"]["promote"] and forced["activated"]  # the gate said no; --force activated it
    listing = json.loads(tagger(sqlite_settings, "models", "list", "--json").stdout)
    assert [r["version"] for r in listing if r["active"]] == [forced["version"]]

    dropped = TAGS[-1]
    rows = (archive / "labels.csv").read_text().splitlines()
    without = tmp_path / "labels-without.csv"
    kept = [(key, " ".join(t for t in tags.split() if t != dropped)) for key, tags in (r.split(",", 1) for r in rows)]
    without.write_text("".join(f"{key},{tags}\n" for key, tags in kept))
    margin = ["--gate-margin", "1"]  # the F2s always pass: only the dropped tag can hold it back
    held = json.loads(train(sqlite_settings, archive, *untrained, *margin, "--seed", "4", labels=str(without)).stdout)
    assert not held["gate"]["promote"] and not held["activated"]
    assert held["gate"]["dropped"] == [dropped] and f"it drops {dropped}" in held["gate"]["reason"]
    assert f"on the {len(TAGS) - 1} tags both know" in held["gate"]["reason"]
    assert tagger(sqlite_settings, "models", "activate", held["version"]).returncode == 0  # as --force would
    refused = tagger(sqlite_settings, "tag", "--query", "missing", "--tags", dropped)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"the active model {held['version']} does not suggest '{dropped}'" in refused.stderr
