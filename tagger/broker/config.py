"""Celery configuration shared by producers and workers: JSON only, late acks, one prefetch."""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

from tagger.settings import Settings
from tagger_client.contract import (
    QUEUE_BULK,
    QUEUE_INTERACTIVE,
    QUEUE_TRAINING,
    TASK_CONTROL_JOB,
    TASK_NOTIFY_JOB,
    TASK_RETRAIN,
    TASK_SUBMIT_JOB,
    TASK_TAG_BATCH,
)


def celery_config(settings: Settings, broker_url: str) -> dict[str, Any]:
    return {
        "broker_url": broker_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # A pool process loads the model before it reports up (worker_process_init), which takes longer than
        # Celery's 4 s on a busy CPU: each replacement of a crashed process was killed as hung and replaced
        # again for as long as the machine stayed busy, and the worker tagged nothing meanwhile.
        "worker_proc_alive_timeout": 120,
        "task_default_queue": QUEUE_BULK,
        # Each queue bound to an exchange of its own name: Celery publishes to a queue through the default
        # exchange either way, but without this every queue showed (and was bound) as `tagger.bulk`.
        "task_queues": tuple(
            Queue(name, Exchange(name, type="direct"), routing_key=name)
            for name in (QUEUE_INTERACTIVE, QUEUE_BULK, QUEUE_TRAINING)
        ),
        "task_routes": {
            TASK_TAG_BATCH: {"queue": QUEUE_BULK},
            TASK_RETRAIN: {"queue": QUEUE_TRAINING},
            TASK_SUBMIT_JOB: {"queue": QUEUE_INTERACTIVE},
            TASK_CONTROL_JOB: {"queue": QUEUE_INTERACTIVE},
            TASK_NOTIFY_JOB: {"queue": QUEUE_INTERACTIVE},
        },
        # "priority": a worker always polls its queues in the order given (interactive first), where
        # kombu's default round-robin would let a long bulk backlog delay an interactive image.
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout,
            "queue_order_strategy": "priority",
            # A killed worker's batches come back within about a fifth of the visibility timeout after
            # it expires (kombu's default sweep is every 100 s).
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 5)),
            "unacked_restore_throttle": 1,
            # The restore sweep's lock: a worker killed while holding it must not block every other
            # worker's restores for kombu's default of 5 minutes (a sweep takes milliseconds).
            "unacked_mutex_expire": 15,
            # A broker that vanishes without closing the socket must not hang a publish forever.
            "socket_connect_timeout": 5,
            "socket_timeout": 30,
        },
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        # Task events (received, started, succeeded, failed) for Flower and `celery events`; off saves a
        # broker message per task state.
        "worker_send_task_events": bool(settings.task_events),
        "task_send_sent_event": False,
        # On a lost broker connection, stop late-ack tasks so they are redelivered (writes are idempotent).
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # The zone `tagger beat` reads TAGGER_RETRAIN_SCHEDULE's cron fields in (Celery's default: UTC).
        "timezone": settings.retrain_timezone,
    }


def make_producer_app(settings: Settings, broker_url: str) -> Any:
    """A Celery app that only sends messages: no task code, so no torch import."""
    from celery import Celery

    app = Celery("tagger-producer")
    app.conf.update(celery_config(settings, broker_url))
    return app
