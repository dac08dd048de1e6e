"""How task messages go out: the `Send` type that job code sends through, and its Celery implementation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tagger.errors import ConfigError
from tagger.settings import Settings
from tagger_client.contract import TASK_TAG_BATCH

log = logging.getLogger(__name__)

Send = Callable[[str, list[Any], str], None]
"""How job code sends a task message: send(task name, positional args, queue)."""


class CelerySender:
    """A `Send` through a Celery app (JSON messages); a page of batch messages goes out in one pipeline."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, task: str, args: list[Any], queue: str) -> None:
        self.app.send_task(task, args=args, queue=queue, argsrepr=_shown(task, args))

    def send_batches(self, job_id: str, batches: list[list[int]], queue: str) -> None:
        """One `tagger.tag_batch` message per id list, buffered by kombu's `Producer.batch` and flushed
        as one Redis pipeline (one round trip per page, not per message).

        A pipeline flush is not retried by kombu; if it fails, the page is sent again message by message
        with Celery's publish retry. A message that had gone out is then delivered twice, which the
        batch task's fence makes harmless (the second delivery finds nothing pending)."""
        from kombu.exceptions import KombuError

        try:
            with self.app.producer_or_acquire() as producer, producer.batch(max_size=len(batches) + 1):
                for ids in batches:
                    args = [job_id, ids]
                    shown = _shown(TASK_TAG_BATCH, args)
                    self.app.send_task(TASK_TAG_BATCH, args=args, queue=queue, producer=producer, argsrepr=shown)
        except (KombuError, OSError, *self.app.connection_for_write().connection_errors) as exc:
            log.warning("job %s: a pipelined page of %d messages failed (%s); sending it again one by one",
                        job_id, len(batches), exc)  # fmt: skip
            for ids in batches:
                self(TASK_TAG_BATCH, [job_id, ids], queue)


def _shown(task: str, args: list[Any]) -> str | None:
    """What logs and Flower show of a message's arguments: Celery's own safe repr of an id list is a
    third of a send's cost, and says less than this."""
    return f"[{args[0]!r}, <{len(args[1])} image ids>]" if task == TASK_TAG_BATCH else None


def send_tag_batches(send: Send, job_id: str, batches: list[list[int]], queue: str) -> None:
    """One `tagger.tag_batch` message per id list: pipelined where the sender can, else one by one."""
    if isinstance(send, CelerySender):
        send.send_batches(job_id, batches, queue)
    else:
        for batch in batches:
            send(TASK_TAG_BATCH, [job_id, batch], queue)


def drop_queued_batches(send: Send | None, job_id: str, queue: str) -> int:
    """Take a job's batch messages out of its queue, for a job that is over for good (cancelled, expired), so
    that a job queued behind them starts at once; returns how many. Where the sender can (Celery on Redis);
    best effort: a batch left in the queue is answered by its worker without the database
    (tagger.worker.ended), so a failure here is logged, never raised."""
    if not isinstance(send, CelerySender):
        return 0
    from tagger.broker.queues import drop_job_batches

    try:
        with send.app.connection_for_write() as connection:
            dropped = drop_job_batches(connection, job_id, queue)
    except Exception:
        log.warning("job %s: its batches stay in %s, where workers skip them", job_id, queue, exc_info=True)
        return 0
    if dropped:
        log.info("job %s: %d queued batch(es) taken out of %s", job_id, dropped, queue)
    return dropped


def celery_sender(app: Any) -> Send:
    return CelerySender(app)


def broker_sender(settings: Settings, broker_url: str | None = None) -> Send:
    """A sender to TAGGER_BROKER_URL (or `broker_url`) through a producer-only Celery app (no torch)."""
    from tagger.broker.config import make_producer_app  # kombu and celery load when a sender is built

    url = broker_url or settings.broker_url
    if not url:
        raise ConfigError("this needs TAGGER_BROKER_URL, the Redis the workers listen on")
    return celery_sender(make_producer_app(settings, url))
