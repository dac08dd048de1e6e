"""The model runtime of a worker process, without Celery: the periodic check, refusals, the recorded store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tagger import promotion, registry
from tagger.settings import Settings
from tagger.worker.runtime import ModelRuntime
from tests.conftest import make_model


def _runtime(sessions, interval: float, clock: Any = None) -> ModelRuntime:  # type: ignore[no-untyped-def]
    timing = {"clock": clock} if clock is not None else {}
    return ModelRuntime(session_factory=sessions, device=torch.device("cpu"), check_interval=interval, **timing)


def test_a_lost_announcement_is_made_up_by_the_periodic_check(settings: Settings, sessions) -> None:  # type: ignore[no-untyped-def]
    a = make_model(settings, sessions, tags=("a", "b"))
    b = make_model(settings, sessions, tags=("a", "b"), seed=1, activate=False)
    now = [1000.0]  # the runtime's clock, moved by the test: nothing depends on how loaded the machine is
    runtime = _runtime(sessions, interval=5.0, clock=lambda: now[0])
    assert runtime.current().version == a
    with sessions() as session, session.begin():  # activated with no announcement at all
        registry.activate(session, b)
    now[0] += 4.9
    assert runtime.current().version == a  # before the interval: the batch goes on with the one serving
    now[0] += 0.2
    assert runtime.current().version == b


def test_a_version_no_worker_can_load_is_refused_and_the_served_one_reactivated(
    settings: Settings, sessions, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    a = make_model(settings, sessions, tags=("a",))
    b = make_model(settings, sessions, tags=("a",), activate=False)
    (tmp_path / "models" / b / "model.json").unlink()  # the artifact is gone from its store
    runtime = _runtime(sessions, interval=0.0)
    assert runtime.current().version == a
    promotion.activate(sessions, b, broker_url=settings.broker_url, check=False)
    assert runtime.current().version == a  # still serving; no exception reaches the batch
    with sessions() as session:
        refused = registry.get(session, b)
        assert refused.status == "refused" and "model.json" in (refused.error or "")
        assert registry.active(session).version == a


def test_a_version_loads_from_where_it_was_stored_whatever_this_machine_s_store(
    settings: Settings, sessions, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    version = make_model(settings, sessions, tags=("a",))
    promotion.verify(sessions, version)  # activation's check reads the recorded store: it is given no other
    assert _runtime(sessions, interval=0.0).current().version == version
