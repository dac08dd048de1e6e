"""Lost messages heal without a person: every TAGGER_HEAL_SECONDS one worker of the fleet (the holder of a
lease in the broker) looks at the broker, and when it holds no message at all while jobs still have pending
images, queues those images again (`tagger.jobs.control.heal`). It runs in the main process of each
`tagger worker`, on a thread of its own; a failure is logged and tried again next round."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from tagger.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from tagger.broker.send import Send

log = logging.getLogger(__name__)


def start(settings: Settings) -> threading.Thread | None:
    """The healer's thread (a daemon), or None when TAGGER_HEAL_SECONDS is 0."""
    if not settings.heal_seconds:
        return None
    thread = threading.Thread(target=_rounds, args=(settings,), name="healer", daemon=True)
    thread.start()
    return thread


def _rounds(settings: Settings) -> None:
    from tagger.broker.send import broker_sender
    from tagger.db import make_engine, make_sessionmaker

    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    sessions = make_sessionmaker(engine)
    send = broker_sender(settings)
    while True:
        time.sleep(settings.heal_seconds)
        try:
            one_round(settings, sessions, send)
        except Exception as exc:  # the database or broker is away: the jobs wait for it anyway
            log.warning("healer: this round did not run: %s", exc)
        finally:
            # No connection idle between rounds: a fleet short of connections has this one for its batches
            # (kept, it was a slot the batches waited on for ever).
            engine.dispose()


def one_round(settings: Settings, sessions: sessionmaker[Session], send: Send) -> dict[str, int]:
    """Take the fleet's lease for this round, read the broker, heal what it lost. Returns job -> re-queued."""
    from tagger.broker.lease import take
    from tagger.broker.queues import broker_depths
    from tagger.jobs.control import heal

    if not take(settings.broker_url, "heal", max(1, int(settings.heal_seconds) - 1)):
        return {}
    depths = broker_depths(settings.broker_url)
    idle = depths.unacked == 0 and not any(depths.waiting.values())
    healed = heal(sessions, send, broker_idle=idle)
    for job_id, n in healed.items():
        log.warning("job %s: the broker held none of its messages; %d pending image(s) queued again", job_id, n)
    return healed
