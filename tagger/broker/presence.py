"""Which workers are up: each `tagger worker` keeps a key in the broker while it runs, rewritten every few
seconds with a TTL, and deletes it when it stops.

`tagger workers` still asks the workers themselves (a Celery broadcast: only a live worker answers, with
what it serves now), but it no longer waits out a fixed window: it stops as soon as every worker present
here has answered. A worker killed outright keeps its key until the TTL runs out, so for those seconds the
broadcast waits its whole window, and answers what it always did.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

PREFIX = "tagger.worker."
BEAT_SECONDS = 5.0  # how often a worker rewrites its key
TTL_SECONDS = 15  # three missed beats: the worker is gone (or cut off from the broker)


def _client(broker_url: str, timeout: float):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(broker_url, socket_timeout=timeout, socket_connect_timeout=timeout)


def beat(broker_url: str, hostname: str, *, timeout: float = 3.0) -> None:
    """Say that worker `hostname` is up, for TTL_SECONDS. Raises redis's errors when the broker cannot be reached."""
    value = json.dumps({"hostname": hostname, "host": socket.gethostname(), "pid": os.getpid(), "at": time.time()})
    with _client(broker_url, timeout) as client:
        client.set(PREFIX + hostname, value, ex=TTL_SECONDS)


def leave(broker_url: str, hostname: str, *, timeout: float = 3.0) -> None:
    """Worker `hostname` stops: its key goes now, not when its TTL runs out. Best effort: never raises."""
    try:
        with _client(broker_url, timeout) as client:
            client.delete(PREFIX + hostname)
    except Exception as exc:  # the broker is away: the key expires on its own
        log.info("could not remove worker %s from the broker's list: %s", hostname, exc)


def present(broker_url: str, *, timeout: float = 3.0) -> list[str]:
    """The node names of the workers whose key is in the broker, sorted. Raises redis's errors when the broker
    cannot be reached."""
    with _client(broker_url, timeout) as client:
        return sorted(
            (key.decode() if isinstance(key, bytes) else str(key)).removeprefix(PREFIX)
            for key in client.scan_iter(match=PREFIX + "*", count=1000)
        )


def keep_beating(broker_url: str, hostname: str, *, every: float = BEAT_SECONDS) -> Callable[[], None]:
    """Beat every `every` seconds on a daemon thread (a broker that does not answer is tried again at the next
    beat); returns what stops the beats and removes the key, for the worker's shutdown."""
    stopped = threading.Event()
    lock = threading.Lock()  # no beat lands after the key is removed

    def run() -> None:
        while True:
            with lock:
                if stopped.is_set():
                    return
                try:
                    beat(broker_url, hostname)
                except Exception as exc:
                    log.info("worker %s could not say it is up: %s", hostname, exc)
            stopped.wait(every)

    def stop() -> None:
        with lock:
            stopped.set()
            leave(broker_url, hostname)

    threading.Thread(target=run, name="presence", daemon=True).start()
    return stop
