"""The broker, the third outside system beside the database (`tagger.db`) and storage (`tagger.storage`).

What travels how:
- Task messages (small JSON: ids, never images) go through Celery on Redis. `config` holds the one
  Celery configuration producers and workers share (queues, routes, late acks); `send` holds the `Send`
  type that job code sends through, and its Celery implementation (`celery_sender` for an app a process
  already has, `broker_sender` for a producer-only app that loads no task code and no torch).
- Queue depths (messages waiting, deliveries not yet acknowledged) are read back by `queues`.
- Model announcements (a newly active version) go over Redis pub/sub on the same server: `events`.
- With no broker configured, `embedded` starts a throwaway redis-server on this machine.

This file imports none of them, so each is imported alone: `send`, `queues` and `events` load kombu,
celery or redis only when they are used (job code imports `send` for its `Send` type), `config` loads kombu.
"""
