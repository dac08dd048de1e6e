from __future__ import annotations

import os
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tagger.errors import ImageError, InvalidKeyError, ObjectMissingError, PermanentError, StorageError
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


def test_local_listing_is_sorted_and_recursive(tmp_path: Path) -> None:
    for name in ["b/2.jpg", "b/1.jpg", "a.jpg", ".hidden/x.jpg", "c/d/e.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list(LocalStorage(tmp_path).list_keys()) == [".hidden/x.jpg", "a.jpg", "b/1.jpg", "b/2.jpg", "c/d/e.png"]
    assert list(LocalStorage(tmp_path).list_keys("b")) == ["b/1.jpg", "b/2.jpg"]


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
    keys = list(keys_from_storage(LocalStorage(tmp_path), exclude=["skip"], passed_over=passed))
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
    listed = list(keys_from_storage(LocalStorage(tmp_path), include=["*"], passed_over=everything))
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
    assert list(storage.list_keys(passed_over=skipped)) == ["ok.jpg"]
    assert skipped == {"a link out of the storage root": 2}


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


def test_the_s3_fixture_owns_its_ports_beside_another_seaweedfs(tmp_path: Path) -> None:
    """SeaweedFS's fixed defaults (Iceberg catalog 8181, Lance 9101) may be taken by another server on the
    machine: the fixture's server must neither need them nor leave a file open when it stops."""
    import socket

    from tests.servers import SeaweedS3

    held = []
    for port in (8181, 9101):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            held.append(sock)
        except OSError:  # already taken by something else: all the better for this test
            sock.close()
    server = SeaweedS3()
    try:
        server.start()
        server.client().create_bucket(Bucket="ports")
    finally:
        server.stop()
        for sock in held:
            sock.close()
    assert getattr(server, "_log", None) is None


def test_s3_failures_no_retry_can_mend_are_permanent(s3, refusals_bucket: str) -> None:  # type: ignore[no-untyped-def]
    """A missing bucket or refused credentials fail the image at once with what to check; a worker does
    not spend its attempts retrying them as it does a timeout."""
    import boto3

    s3.client().put_object(Bucket="refusals", Key="creds/x.jpg", Body=b"x")
    with pytest.raises(ObjectMissingError, match="no such bucket: no-such-bucket"):
        S3Storage("no-such-bucket", client=s3.client()).read("x.jpg")
    wrong = boto3.session.Session().client(
        "s3", endpoint_url=s3.endpoint, aws_access_key_id=s3.access_key, aws_secret_access_key="not-the-secret"
    )
    with pytest.raises(PermanentError, match="SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId|403") as refused:
        S3Storage("refusals", "creds", client=wrong).read("x.jpg")
    assert not isinstance(refused.value, StorageError)
