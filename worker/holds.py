"""Hold points: a test stops a worker at a named stage of a batch, then kills, cuts off or releases it there.

Off unless TAGGER_TEST_HOLDS=1 (the worker does not even import this module), and then one rename
attempt per stage when nothing is armed. A test
arms a stage by creating `<var_dir>/holds/arm-<stage>`; the first batch to reach that stage takes the
arm (an atomic rename, so exactly one batch holds per arm), writes what it holds (stage, pid, job id,
image ids, Celery task id) into `held-<stage>-<pid>-<n>.json` and waits until the test deletes that
file. Stages, in order: claimed (attempts counted), fetched (decoded), inferred (on the model, not
written), written (committed, not yet acknowledged).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

STAGES = ("claimed", "fetched", "inferred", "written")
_count = itertools.count()


def hold(var_dir: Path, stage: str, *, job_id: str, image_ids: list[int], task_id: str | None) -> None:
    """Block here while a test holds this stage (see the module docstring); return at once otherwise."""
    folder = var_dir / "holds"
    held = folder / f"held-{stage}-{os.getpid()}-{next(_count)}.json"
    try:
        os.rename(folder / f"arm-{stage}", held)
    except FileNotFoundError:  # not armed, or another batch took the arm
        return
    info = {"stage": stage, "pid": os.getpid(), "job_id": job_id, "image_ids": image_ids, "task_id": task_id}
    held.write_text(json.dumps(info))
    while held.exists():
        time.sleep(0.02)
