"""The CUDA code paths: nvJPEG decoding, bf16 + channels_last inference, torch.compile on the GPU.

Collected everywhere, run only where a CUDA device is present (the benchmark host: `python -m pytest
-m gpu tests/gpu/test_gpu.py`); elsewhere each is reported as skipped with that reason, never as passed.
On the GPU host set TESTS_REQUIRE_GPU=1 so that a broken CUDA install fails these tests instead of skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tagger.model.architectures import build_model
from tagger.model.predict import compile_for_serving, predict, prepare
from tagger.model.preprocess import Normalise
from tagger.worker.device_decode import DeviceDecoder, OnDevice
from tagger.worker.loader import Failed
from tests.support import hostile_corpus
from tests.unit.test_device_decode import LIMITS, load

pytestmark = pytest.mark.skipif(  # the `gpu` marker comes from the folder (tests/conftest.py)
    not torch.cuda.is_available() and not os.environ.get("TESTS_REQUIRE_GPU"),
    reason="no CUDA device here (hardware, not a server the tests could start): run on the GPU host",
)
SIZE = 64


def test_nvjpeg_agrees_with_pillow_on_every_hostile_file(tmp_path: Path) -> None:
    expected = hostile_corpus.write(tmp_path)
    keys = sorted(expected)
    cuda = torch.device("cuda")
    pillow = load(tmp_path, keys, None, size=SIZE)
    device = load(tmp_path, keys, OnDevice(DeviceDecoder(SIZE, cuda), LIMITS), size=SIZE)
    for key in keys:
        ours, theirs = device[key], pillow[key]
        assert type(ours) is type(theirs), key
        if isinstance(ours, Failed):
            assert ours.reason == theirs.reason, key  # type: ignore[union-attr]
        else:
            assert ours.pixels.device.type == "cuda"  # type: ignore[union-attr]
            diff = (ours.pixels.cpu().float() - theirs.pixels.float()).abs().mean()  # type: ignore[union-attr]
            assert diff <= 3.0, (key, float(diff))


def test_bf16_channels_last_serving_agrees_with_float32() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", 8)
    batch = torch.randint(0, 256, (16, 3, SIZE, SIZE), dtype=torch.uint8)
    norm = Normalise()
    reference = predict(model.eval(), batch, normalise=norm, device=torch.device("cpu"), dtype=torch.float32)
    copy = build_model("resnet18", 8)
    copy.load_state_dict(model.state_dict())
    served, dtype = prepare(copy, torch.device("cuda"))
    assert dtype == torch.bfloat16
    out = predict(served, batch, normalise=norm, device=torch.device("cuda"), dtype=dtype)
    assert out.device.type == "cpu" and (out - reference).abs().max() < 0.05


def test_a_compiled_model_serves_as_the_eager_one_on_the_gpu() -> None:
    torch.manual_seed(0)
    cuda = torch.device("cuda")
    model, dtype = prepare(build_model("resnet18", 8), cuda)
    norm = Normalise()
    compiled = compile_for_serving(model, batch_size=8, input_size=SIZE, normalise=norm, device=cuda, dtype=dtype)
    for n in (1, 8, 13):
        batch = torch.randint(0, 256, (n, 3, SIZE, SIZE), dtype=torch.uint8)
        eager = predict(model, batch, normalise=norm, device=cuda, dtype=dtype)
        served = predict(compiled, batch, normalise=norm, device=cuda, dtype=dtype, pad_to=8)
        assert served.shape == (n, 8) and (served - eager).abs().max() < 0.02


def test_a_gpu_worker_reports_its_gpu_memory_in_its_metrics(tmp_path: Path, redis_url: str) -> None:
    import re

    from tagger.broker.config import make_producer_app
    from tagger.broker.send import celery_sender
    from tagger.jobs.progress import summary
    from tagger.worker.local import LocalWorkers
    from tests.conftest import make_settings, submit_keys
    from tests.support.servers import free_port
    from tests.system.test_client import _deployment
    from tests.system.test_operations import TOKEN, http, until

    port = free_port()
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'tagger.db'}",
        device="cuda",
        broker_url=redis_url,
        metrics_port=port,
        metrics_token=TOKEN,
    )
    _, sessions, keys, url = _deployment(settings, tmp_path / "archive", 8, seed=3)
    log = tmp_path / "workers.log"
    with LocalWorkers(settings, count=1, log_file=log):
        send = celery_sender(make_producer_app(settings, redis_url))
        job = submit_keys(sessions, send, keys, storage_url=url).job_id
        until(lambda: summary(sessions, job).state.finished, 120, log)
        status, text = http(port, "/metrics")
    assert status == 200
    found = re.search(r"^tagger_gpu_memory_allocated_bytes (\S+)$", text, re.M)
    assert found and float(found.group(1)) > 0, text[-2000:]
