"""Tell running workers that the active model changed: Redis pub/sub on the broker, best effort.

Workers also check the database every few seconds, so a lost announcement only delays a swap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

CHANNEL = "tagger:model-activated"


def _is_redis(url: str | None) -> bool:
    return bool(url) and url.split("://", 1)[0] in ("redis", "rediss", "unix")  # type: ignore[union-attr]


def announce(broker_url: str | None, version: str) -> int:
    """Publish the newly active version; returns how many listeners heard it (0 if none or no Redis)."""
    if not _is_redis(broker_url):
        return 0
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_timeout=5)  # type: ignore[arg-type]
        try:
            return int(client.publish(CHANNEL, version))
        finally:
            client.close()
    except redis.RedisError as exc:
        log.warning("could not announce model %s (%s); workers pick it up on their periodic check", version, exc)
        return 0


def listen(broker_url: str | None, on_version: Callable[[str], None]) -> threading.Thread | None:
    """Start a daemon thread calling on_version(version) for every announcement; reconnects on errors."""
    if not _is_redis(broker_url):
        return None
    import redis

    def run() -> None:
        delay = 1.0
        while True:
            try:
                client = redis.Redis.from_url(broker_url, socket_timeout=None)  # type: ignore[arg-type]
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                delay = 1.0
                for message in pubsub.listen():
                    version = message["data"].decode() if isinstance(message["data"], bytes) else str(message["data"])
                    try:
                        on_version(version)
                    except Exception:
                        log.exception("handling the announcement of model %s failed", version)
            except redis.RedisError as exc:
                log.info("model announcements: %s; reconnecting in %.0fs", exc, delay)
                time.sleep(delay)
                delay = min(30.0, delay * 2)

    thread = threading.Thread(target=run, name="model-events", daemon=True)
    thread.start()
    return thread
