from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tagger.errors import ImageError, InvalidKeyError, ObjectMissingError
from tagger.storage import LocalStorage, S3Storage, open_storage, validate_key

BAD_KEYS = [
    "",
    "/etc/passwd",
    "../secret.jpg",
    "a/../../b.jpg",
    "a/./b.jpg",
    "a//b.jpg",
    "a\\b.jpg",
    "C:/x.jpg",
    "a/b\x00.jpg",
    "line\nbreak.jpg",
    "x" * 2000,
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key)


def test_good_keys_pass() -> None:
    for key in ["a.jpg", "stills/2024/01/a b.jpg", "ünïcode/ø.png", "..hidden-ish/x.jpg"]:
        assert validate_key(key) == key


def test_local_listing_is_sorted_recursive_and_skips_hidden(tmp_path: Path) -> None:
    for name in ["b/2.jpg", "b/1.jpg", "a.jpg", ".hidden/x.jpg", "c/d/e.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list(LocalStorage(tmp_path).list_keys()) == ["a.jpg", "b/1.jpg", "b/2.jpg", "c/d/e.png"]
    assert list(LocalStorage(tmp_path).list_keys("b")) == ["b/1.jpg", "b/2.jpg"]


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
    assert list(storage.list_keys()) == ["ok.jpg"]


def test_missing_and_oversized_files(tmp_path: Path) -> None:
    (tmp_path / "big.jpg").write_bytes(b"x" * 1000)
    storage = LocalStorage(tmp_path)
    with pytest.raises(ObjectMissingError):
        storage.read("nope.jpg")
    with pytest.raises(ImageError, match="over the limit"):
        storage.read("big.jpg", max_bytes=999)


@pytest.fixture(scope="module")
def refusals_bucket(s3) -> str:  # type: ignore[no-untyped-def]
    s3.client().create_bucket(Bucket="refusals")
    return "refusals"


@pytest.mark.parametrize("key", ["../other-prefix/x.jpg", "/abs.jpg", "a/../../b.jpg"])
def test_s3_refuses_bad_keys_before_any_request(s3, refusals_bucket: str, key: str) -> None:  # type: ignore[no-untyped-def]
    client, prefix = s3.client(), f"p{uuid.uuid4().hex[:8]}"
    client.put_object(Bucket="refusals", Key=f"{prefix}/ok.jpg", Body=b"ok")
    requests: list[str] = []
    client.meta.events.register("before-send", lambda request, **_: requests.append(request.url))
    storage = S3Storage("refusals", prefix, client=client)
    assert storage.read("ok.jpg") == b"ok" and len(requests) == 1  # the counter sees real requests
    with pytest.raises(InvalidKeyError):
        storage.read(key)
    assert len(requests) == 1, f"a refused key reached the server: {requests[1:]}"


def test_s3_round_trip_and_paginated_listing(s3: object) -> None:
    client = s3.client()  # type: ignore[attr-defined]
    client.create_bucket(Bucket="listing")
    storage = open_storage("s3://listing/archive")
    keys = [f"k/{i:05d}.jpg" for i in range(1234)]  # more than one ListObjectsV2 page (1000)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: storage.write(k, k.encode()), keys))
    client.put_object(Bucket="listing", Key="elsewhere/x.jpg", Body=b"x")
    listed = list(storage.list_keys())
    assert listed == keys
    assert storage.read("k/00042.jpg") == b"k/00042.jpg"
    with pytest.raises(ObjectMissingError):
        storage.read("k/missing.jpg")
