"""Per-process worker state, built after fork: settings, database, model runtime, fetch pool."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tagger.db import make_engine, make_sessionmaker, make_statement_engine
from tagger.db.engine import take_turns
from tagger.settings import Settings
from tagger.storage import Storage, open_storage
from tagger.worker.ended import EndedJobs

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine  # the hot path's one-statement claim and write (`run_statement`): no ping on checkout
    sessions: sessionmaker[Session]
    runtime: Any  # worker.runtime.ModelRuntime, imported lazily to keep torch out of the parent
    pool: ThreadPoolExecutor
    storages: dict[str, Storage] = field(default_factory=dict)
    ended: EndedJobs = field(default_factory=EndedJobs)  # cancelled or expired jobs: their batches are answered here

    storage_lock: threading.Lock = field(default_factory=threading.Lock)

    def storage(self, url: str) -> Storage:
        with self.storage_lock:  # task threads share one client per storage (and its connection pool)
            if url not in self.storages:
                self.storages[url] = open_storage(url)
            return self.storages[url]


_context: WorkerContext | None = None
_context_lock = threading.Lock()
_settings: Settings | None = None  # the settings `tagger worker` read once; pool processes inherit them
_tasks = 1  # batches one process runs at once: 1 in a prefork process, the concurrency in the threads pool


def configure(settings: Settings, *, tasks: int = 1) -> None:
    """Hand this process (and the pool processes it forks) the settings the command line read, and how many
    batches each process runs at once (its database pools are sized to it: worker/shape.py's budget)."""
    global _settings, _tasks
    _settings, _tasks = settings, tasks


def get_context() -> WorkerContext:
    """This process's context, built on first use from the configured settings (never re-read from the env)."""
    global _context
    if _context is None:
        with _context_lock:
            if _context is None:
                if _settings is None:
                    raise RuntimeError("the worker context is not configured: start workers with `tagger worker`")
                _context = build_context(_settings)
    return _context


def build_context(settings: Settings, *, torch_threads: int | None = None) -> WorkerContext:
    import torch

    from tagger.model.device import pick_device
    from tagger.model.preprocess import DecodeLimits
    from tagger.model.serving import ServingOptions
    from tagger.worker.runtime import ModelRuntime

    if torch_threads:
        torch.set_num_threads(torch_threads)
    # One claim-and-write connection per batch at once; as many for the rest, and one more for the webhook
    # deliveries' thread (connections_per_process): a fleet's budget is known, and `tagger config` says it.
    engine = make_statement_engine(settings.database_url, pool_size=_tasks)
    orm_engine = make_engine(settings.database_url, pool_size=_tasks, max_overflow=1)
    take_turns(engine, orm_engine)  # a process left one slot by the server uses it for both, in turn
    sessions = make_sessionmaker(orm_engine)
    device = pick_device(settings.device)
    options = ServingOptions(
        threshold_override=settings.threshold,
        limits=DecodeLimits(max_pixels=settings.max_image_pixels, draft=bool(settings.jpeg_draft)),
        compile_batch=settings.batch_size if settings.compile else None,
    )
    runtime = ModelRuntime(
        session_factory=sessions,
        device=device,
        options=options,
        device_decode=settings.decoder == "device" or (settings.decoder == "auto" and device.type == "cuda"),
        cpu_jpeg_share=settings.cpu_jpeg_share,
    )
    log.info("worker process %d ready (torch threads %d)", os.getpid(), torch.get_num_threads())
    return WorkerContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        runtime=runtime,
        pool=ThreadPoolExecutor(settings.fetch_threads, thread_name_prefix="fetch"),
    )


def init_process(settings: Settings, *, torch_threads: int | None = None) -> WorkerContext:
    """Build this process's context (called in each pool process after fork) and warm the model."""
    from tagger.broker.events import listen

    global _context
    configure(settings)
    with _context_lock:
        if _context is None:  # a task thread may have built it already (threads pool)
            _context = build_context(settings, torch_threads=torch_threads)
    try:
        _context.runtime.current()
    except Exception as exc:  # a worker may start before the first model exists
        log.warning("no model loaded at start: %s", exc)
    # An announcement only says "look now"; the database says which version is active.
    listen(settings.broker_url, lambda _version: _context.runtime.refresh())  # type: ignore[union-attr]
    return _context
