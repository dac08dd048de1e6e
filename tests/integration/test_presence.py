"""The broker's list of running workers (tagger.broker.presence) on a real Redis: a beat lists a worker for a
while, leaving or stopping its beats removes it, and nothing beats again after the stop."""

from __future__ import annotations

import time

import redis

from tagger.broker import presence


def test_a_worker_is_listed_while_it_beats_and_not_after_it_leaves(redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/12"
    client = redis.Redis.from_url(url)
    client.flushdb()
    presence.beat(url, "a@host")
    stop = presence.keep_beating(url, "b@host", every=0.01)
    deadline = time.monotonic() + 10
    while presence.present(url) != ["a@host", "b@host"]:
        assert time.monotonic() < deadline, presence.present(url)
        time.sleep(0.02)
    assert 0 < client.ttl(presence.PREFIX + "a@host") <= presence.TTL_SECONDS  # a killed worker drops out
    presence.leave(url, "a@host")
    stop()
    assert presence.present(url) == []
    time.sleep(0.2)  # twenty beats' time: the stopped thread never writes its key again
    assert presence.present(url) == [] and client.dbsize() == 0
    client.close()
