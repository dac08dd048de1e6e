"""Every storage read has a deadline: an image whose read does not finish, or that is no file at all, fails
alone with that reason, and its batch-mates are tagged (the loader, against real files and a real socket)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from tagger.errors import PermanentError
from tagger.model.preprocess import DecodeLimits, Preprocess
from tagger.storage import LocalStorage
from tagger.storage.s3 import S3Storage
from tagger.worker.device_decode import DeviceDecoder, OnDevice
from tagger.worker.loader import Failed, Item, Loaded, load_batch
from tests.conftest import write_stills


class SilentServer:
    """A real TCP server that takes every request and never answers: a hung storage server."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.closed:
                conn.close()
                return
            self.held.append(conn)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        self.sock.close()
        for conn in self.held:  # the abandoned reads end now, releasing their threads
            conn.close()


def _hung_s3(server: SilentServer) -> S3Storage:
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.url,
        aws_access_key_id="tagger",
        aws_secret_access_key="tagger-secret",
        region_name="us-east-1",
        config=Config(connect_timeout=5, read_timeout=120, retries={"max_attempts": 1}),
    )
    return S3Storage("archive", client=client)


@pytest.mark.parametrize("device_path", [False, True], ids=["pillow", "device decoder"])
def test_a_hung_read_and_a_named_pipe_fail_alone(tmp_path: Path, device_path: bool) -> None:
    keys = write_stills(tmp_path, 3)
    os.mkfifo(tmp_path / "stills" / "pipe.jpg")  # a named pipe with no writer: open() for reading would block
    local = LocalStorage(tmp_path)
    server = SilentServer()
    items = [
        Item(1, local, keys[0]),
        Item(2, _hung_s3(server), "frames/0001.jpg"),
        Item(3, local, "stills/pipe.jpg"),
        Item(4, local, keys[1]),
        Item(5, local, keys[2]),
    ]
    on_device = OnDevice(DeviceDecoder(32, torch.device("cpu")), DecodeLimits()) if device_path else None
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(4) as pool:
            loaded, failed = load_batch(
                items,
                preprocess=Preprocess(32),
                pool=pool,
                max_bytes=1 << 20,
                read_timeout=1.5,
                on_device=on_device,
            )
            elapsed = time.monotonic() - started
            server.close()
    finally:
        server.close()
    assert sorted(o.image_id for o in loaded) == [1, 4, 5] and all(isinstance(o, Loaded) for o in loaded)
    reasons = {f.image_id: f.reason for f in failed if isinstance(f, Failed)}
    assert reasons == {
        2: "not read within 1.5 s (TAGGER_READ_TIMEOUT): a hung file, pipe or storage server",
        3: "cannot read stills/pipe.jpg: not a regular file (a named pipe)",
    }
    assert 1.4 < elapsed < 5


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    (tmp_path / "dir.jpg").mkdir()
    os.mkfifo(tmp_path / "fifo.jpg")
    os.symlink("/dev/zero", tmp_path / "zero.jpg")  # out of the root: refused by the key rules before any I/O
    storage = LocalStorage(tmp_path)
    with pytest.raises(PermanentError, match="is a directory: dir.jpg"):
        storage.read("dir.jpg")
    started = time.monotonic()
    with pytest.raises(PermanentError, match=r"not a regular file \(a named pipe\)"):
        storage.read("fifo.jpg")
    assert time.monotonic() - started < 1
    with pytest.raises(PermanentError, match="outside the storage root"):
        storage.read("zero.jpg")
