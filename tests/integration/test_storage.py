from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tagger.errors import InvalidKeyError, ObjectMissingError, PermanentError, StorageError
from tagger.storage import S3Storage, open_storage


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
    listed = [e.key for e in storage.list_entries()]
    assert listed == keys
    assert storage.read("k/00042.jpg") == b"k/00042.jpg"
    with pytest.raises(ObjectMissingError):
        storage.read("k/missing.jpg")


def test_the_s3_fixture_owns_its_ports_beside_another_seaweedfs(tmp_path: Path) -> None:
    """SeaweedFS's fixed defaults (Iceberg catalog 8181, Lance 9101) may be taken by another server on the
    machine: the fixture's server must neither need them nor leave a file open when it stops."""
    import socket

    from tests.support.servers import SeaweedS3

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
