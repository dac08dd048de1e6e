"""The producer's fast paths give the same answers as the rules they shortcut, on many generated keys."""

from __future__ import annotations

import random

import pytest

from tagger.errors import InvalidKeyError
from tagger.jobs.sources import DEFAULT_EXCLUDE, Patterns, matches
from tagger.storage.keys import MAX_KEY_BYTES, checked_key, validate_key

ALPHABET = ["a", "Z", "é", "あ", ".", "..", "/", "//", "\\", ":", " ", "-", "\x00", "\t", "\n", "\x7f", "\udcff"]


def _outcome(check: object, key: str) -> str:
    try:
        return "ok:" + check(key)  # type: ignore[operator]
    except InvalidKeyError as exc:
        return f"refused:{exc}"


def test_the_fast_key_check_agrees_with_every_check_in_turn() -> None:
    rng = random.Random(7)
    keys = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 9))) for _ in range(30_000)]
    keys += ["x" * 256, "x" * 257, "é" * 256, "é" * 512, "あ" * 341, "あ" * 342, "C:/x.jpg", "a/.b", ".hidden"]
    for key in keys:
        assert _outcome(validate_key, key) == _outcome(checked_key, key), repr(key)
    assert len(("あ" * 342).encode()) > MAX_KEY_BYTES  # the long cases do reach the size rule


@pytest.mark.parametrize("extra", [(), ("*.tmp", "raw/*", "*/cache/*", "[!a]*.jpg")])
def test_compiled_patterns_pick_the_same_first_pattern_as_matches(extra: tuple[str, ...]) -> None:
    patterns = DEFAULT_EXCLUDE + extra
    compiled = Patterns(patterns)
    names = [".DS_Store", "@eaDir", "#recycle", "Thumbs.db", "x.tmp", "raw", "cache", "b.jpg", "a.jpg", "ok"]
    rng = random.Random(3)
    for _ in range(20_000):
        key = "/".join(rng.choice(names) for _ in range(rng.randint(1, 4)))
        assert compiled.first(key) == next((p for p in patterns if matches(key, p)), None), key
