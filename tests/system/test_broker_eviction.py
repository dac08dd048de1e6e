"""A broker Redis that may evict keys (shared with a cache under an LRU/LFU/random policy) is refused at a
worker's start and reported by /readyz, with the fix; only `noeviction` keeps every queued batch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tagger.broker.embedded import EmbeddedRedis
from tagger.broker.eviction import eviction_problem
from tagger.processes import child_env
from tagger.settings import Settings
from tagger.worker.health import _eviction

EVICTING = ["allkeys-lru", "volatile-lfu", "allkeys-random", "volatile-ttl"]


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    """A Redis of this module's own: its policy is changed here, which the session's shared one must not see."""
    with EmbeddedRedis() as server:
        yield server.url


def _policy(url: str, policy: str) -> None:
    with redis.Redis.from_url(url) as client:
        client.config_set("maxmemory-policy", policy)


@pytest.mark.parametrize("policy", EVICTING)
def test_an_evicting_policy_is_named_with_its_fix(broker: str, policy: str) -> None:
    _policy(broker, policy)
    problem = eviction_problem(broker)
    assert problem is not None and f"maxmemory-policy {policy}" in problem and "noeviction" in problem
    assert _eviction(Settings(broker_url=broker)) == (False, problem)
    assert _eviction(Settings(broker_url=broker, broker_allow_eviction=1)) == (True, f"allowed: {problem}")
    _policy(broker, "noeviction")
    assert eviction_problem(broker) is None
    assert _eviction(Settings(broker_url=broker)) == (True, "keeps every message")


def test_a_worker_refuses_to_start_on_an_evicting_broker(broker: str, tmp_path: Path) -> None:
    _policy(broker, "allkeys-lru")
    try:
        env = child_env(Settings(var_dir=tmp_path, broker_url=broker, database_url=f"sqlite:///{tmp_path}/t.db"))
        done = subprocess.run(
            [sys.executable, "-m", "tagger", "worker"], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        _policy(broker, "noeviction")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "maxmemory-policy allkeys-lru" in done.stderr and "TAGGER_BROKER_ALLOW_EVICTION=1" in done.stderr
