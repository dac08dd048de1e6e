"""A folder walk visits each folder once, however links inside the root are arranged, and counts the rest."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from tagger.storage.local import LocalStorage

AGAIN = "a folder reached again through a link"


def _walk(root: Path, prefix: str = "") -> tuple[list[str], Counter[str]]:
    passed: Counter[str] = Counter()
    return [e.key for e in LocalStorage(root).list_entries(prefix, passed_over=passed)], passed


def _tree(root: Path, *files: str) -> None:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_a_link_back_to_an_ancestor_is_passed_over(tmp_path: Path) -> None:
    _tree(tmp_path, "a/b/1.jpg", "top.jpg")
    os.symlink("../..", tmp_path / "a/b/up")  # to the root
    os.symlink("..", tmp_path / "a/b/parent")  # to a/
    os.symlink(".", tmp_path / "a/self")  # to itself
    keys, passed = _walk(tmp_path)
    assert keys == ["a/b/1.jpg", "top.jpg"]
    assert passed == {AGAIN: 3}


def test_folders_linking_to_each_other_are_each_walked_once(tmp_path: Path) -> None:
    _tree(tmp_path, "x/1.jpg", "y/2.jpg")
    os.symlink("../y", tmp_path / "x/to-y")
    os.symlink("../x", tmp_path / "y/to-x")
    keys, passed = _walk(tmp_path)
    # x is walked first and reaches y through its link (keys under x/to-y); y itself is then passed over.
    assert keys == ["x/1.jpg", "x/to-y/2.jpg"]
    assert passed == {AGAIN: 2}  # x/to-y/to-x (x again) and y (reached again)


def test_a_second_link_to_one_folder_lists_its_images_once(tmp_path: Path) -> None:
    _tree(tmp_path, "shots/1.jpg", "shots/2.jpg")
    os.symlink("shots", tmp_path / "z-alias")
    keys, passed = _walk(tmp_path)
    assert keys == ["shots/1.jpg", "shots/2.jpg"]
    assert passed == {AGAIN: 1}


def test_a_loop_below_a_prefix_ends(tmp_path: Path) -> None:
    _tree(tmp_path, "p/q/1.jpg")
    os.symlink("../../p", tmp_path / "p/q/loop")
    keys, passed = _walk(tmp_path, "p/")
    assert keys == ["p/q/1.jpg"]
    assert passed == {AGAIN: 1}
