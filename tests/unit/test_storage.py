"""Keys and the local storage: refusals before any I/O, listings, links and limits (S3: tests/integration/)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from tagger.errors import ImageError, InvalidKeyError, ObjectMissingError
from tagger.storage import LocalStorage, validate_key
from tests.support.keys import BAD_KEYS


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key)


def test_good_keys_pass() -> None:
    for key in ["a.jpg", "stills/2024/01/a b.jpg", "ünïcode/ø.png", "..hidden-ish/x.jpg"]:
        assert validate_key(key) == key


def test_local_listing_is_sorted_and_recursive(tmp_path: Path) -> None:
    for name in ["b/2.jpg", "b/1.jpg", "a.jpg", ".hidden/x.jpg", "c/d/e.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [e.key for e in LocalStorage(tmp_path).list_entries()] == [
        ".hidden/x.jpg",
        "a.jpg",
        "b/1.jpg",
        "b/2.jpg",
        "c/d/e.png",
    ]
    assert [e.key for e in LocalStorage(tmp_path).list_entries("b")] == ["b/1.jpg", "b/2.jpg"]


def test_a_listing_passes_over_clutter_and_non_images_and_counts_them(tmp_path: Path) -> None:
    """Hidden files, NAS thumbnails and bins, macOS leftovers and non-image names are left out, by reason."""
    from tagger.jobs.sources import PassedOver, keys_from_storage

    names = [
        "ok.jpg",
        "LOUD.JPEG",
        "deep/er/still.webp",
        ".DS_Store",
        "._ok.jpg",
        ".thumbnails/t.jpg",
        "@eaDir/ok.jpg/SYNOFILE_THUMB_M.jpg",
        "deep/@eaDir/still.webp/SYNOPHOTO_THUMB_S.jpg",
        "#recycle/old.jpg",
        "__MACOSX/deep/._still.webp",
        "notes.txt",
        "raw.CR2",
        "phone.heic",
        "phone2.HEIC",
        "README",
        "skip/this.jpg",
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    passed = PassedOver()
    keys = [e.key for e in keys_from_storage(LocalStorage(tmp_path), exclude=["skip"], passed_over=passed)]
    assert keys == ["LOUD.JPEG", "deep/er/still.webp", "ok.jpg"]
    assert dict(passed) == {
        "excluded by pattern '.*'": 4,  # .DS_Store, ._ok.jpg, .thumbnails/t.jpg, __MACOSX's ._still.webp
        "excluded by pattern '@eaDir'": 2,
        "excluded by pattern '#recycle'": 1,
        "excluded by pattern 'skip'": 1,
        "not an image file name (.txt)": 1,
        "not an image file name (.cr2)": 1,
        "not an image file name (.heic)": 2,
        "not an image file name (no suffix)": 1,
    }
    everything = PassedOver()
    listed = [e.key for e in keys_from_storage(LocalStorage(tmp_path), include=["*"], passed_over=everything)]
    assert "notes.txt" in listed and "README" in listed and ".DS_Store" not in listed


def test_symlink_out_of_root_is_refused_and_not_listed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"secret")
    os.symlink(outside / "secret.jpg", root / "link.jpg")
    os.symlink(outside, root / "linkdir")
    (root / "ok.jpg").write_bytes(b"ok")
    storage = LocalStorage(root)
    with pytest.raises(InvalidKeyError, match="outside the storage root"):
        storage.read("link.jpg")
    with pytest.raises(InvalidKeyError):
        storage.read("linkdir/secret.jpg")
    skipped: Counter[str] = Counter()
    assert [e.key for e in storage.list_entries(passed_over=skipped)] == ["ok.jpg"]
    assert skipped == {"a link out of the storage root": 2}


def test_missing_and_oversized_files(tmp_path: Path) -> None:
    (tmp_path / "big.jpg").write_bytes(b"x" * 1000)
    storage = LocalStorage(tmp_path)
    with pytest.raises(ObjectMissingError):
        storage.read("nope.jpg")
    with pytest.raises(ImageError, match="over the limit"):
        storage.read("big.jpg", max_bytes=999)
