"""Whether the broker's Redis may evict keys: a Redis shared with a cache under an LRU or LFU policy drops
queued batches and the queues' bindings under memory pressure, and the jobs they belong to then wait for
ever. Only `noeviction` keeps every message; anything else is refused at worker start (unless allowed on
purpose) and reported by /readyz."""

from __future__ import annotations

SAFE_POLICY = "noeviction"


def eviction_policy(broker_url: str, *, timeout: float = 3.0) -> str | None:
    """The broker Redis's `maxmemory-policy`, or None when it will not say (CONFIG refused, as managed Redis
    services do, or a URL redis-py cannot open, such as sentinel://).

    Raises redis's ConnectionError or TimeoutError when the broker cannot be reached within `timeout` seconds.
    """
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    except ValueError:
        return None
    try:
        return str(client.config_get("maxmemory-policy").get("maxmemory-policy") or "") or None
    except redis.ResponseError:
        return None
    finally:
        client.close()


def eviction_problem(broker_url: str, *, timeout: float = 3.0) -> str | None:
    """What is wrong with the broker's eviction policy and how to fix it; None when it keeps every key
    (or does not say which policy it has)."""
    policy = eviction_policy(broker_url, timeout=timeout)
    if policy is None or policy == SAFE_POLICY:
        return None
    return (
        f"the broker Redis may evict keys (maxmemory-policy {policy}): under memory pressure it drops queued "
        "batches and the queues' bindings, and their jobs stall. Give tagger a Redis of its own, or set "
        f"`maxmemory-policy {SAFE_POLICY}` on this one (CONFIG SET maxmemory-policy {SAFE_POLICY}, and in "
        "redis.conf); TAGGER_BROKER_ALLOW_EVICTION=1 runs anyway"
    )
