"""What waits in the broker: messages per queue and deliveries not yet acknowledged (Redis through kombu)."""

from __future__ import annotations

from dataclasses import dataclass

from tagger_client.contract import QUEUE_BULK, QUEUE_INTERACTIVE, QUEUE_NOTIFICATIONS, QUEUE_TRAINING

QUEUES = (QUEUE_INTERACTIVE, QUEUE_BULK, QUEUE_TRAINING, QUEUE_NOTIFICATIONS)

# kombu's Redis transport keeps delivered, unacknowledged messages in this hash until they are acked
# (or restored after the visibility timeout).
UNACKED_KEY = "unacked"


@dataclass(frozen=True)
class BrokerDepths:
    """Messages waiting per queue (every priority level summed) and deliveries in flight, broker-wide."""

    waiting: dict[str, int]
    unacked: int


def broker_depths(broker_url: str, queues: tuple[str, ...] = QUEUES, *, timeout: float = 3.0) -> BrokerDepths:
    """Ask the broker, through kombu's own accounting (a declare counts every priority level's list; an
    empty queue has no key in Redis, so the declare is not passive).

    Raises kombu's OperationalError (or the socket's error) when the broker cannot be reached within `timeout`.
    """
    from kombu import Connection

    with Connection(broker_url, connect_timeout=timeout, transport_options={"socket_timeout": timeout}) as conn:
        conn.ensure_connection(max_retries=0, timeout=timeout)  # one try: a probe must not linger
        channel = conn.default_channel
        waiting = {q: int(channel.queue_declare(queue=q).message_count) for q in queues}
        client = getattr(channel, "client", None)
        unacked = int(client.hlen(UNACKED_KEY)) if client is not None else 0
    return BrokerDepths(waiting, unacked)
