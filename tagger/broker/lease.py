"""A lease on a name, held in the broker's Redis for a while: one process of a fleet does a periodic chore."""

from __future__ import annotations

import os
import socket


def take(broker_url: str, name: str, seconds: int, *, timeout: float = 3.0) -> bool:
    """Whether this process now holds `name` for `seconds` (nobody else did). Raises redis's errors when the
    broker cannot be reached."""
    import redis

    with redis.Redis.from_url(broker_url, socket_timeout=timeout, socket_connect_timeout=timeout) as client:
        holder = f"{socket.gethostname()}:{os.getpid()}"
        return bool(client.set(f"tagger.lease.{name}", holder, nx=True, ex=seconds))
