"""`tagger results` shows an image's latest failure beside older suggestions: a still replaced by a file that
cannot be read fails in the new job, and its old picture's tags are no longer shown as if nothing happened."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tagger import registry
from tagger.processes import child_env
from tagger.results import find_images, latest_failure
from tagger.settings import Settings
from tagger.worker.sink import Refused, Tagged, record_batch
from tests.conftest import fill_job, make_model, new_job


def _results(settings: Settings, key: str, storage: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagger", "results", key, "--storage", storage, "--json"],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_failure_after_the_tags_is_shown_and_a_later_success_clears_it(  # type: ignore[no-untyped-def]
    settings: Settings, sessions, engine, tmp_path: Path
) -> None:
    make_model(settings, sessions, tags=("night",))
    with sessions() as session:
        version_id = registry.active(session).id
        night = registry.ensure_tags(session, ["night"])["night"]
    url = tmp_path.as_uri()

    def run(outcome: str) -> str:
        job = new_job(sessions, url).job_id
        image_id = fill_job(sessions, job, ["s/a.jpg"], url)["s/a.jpg"]
        if outcome == "tagged":
            record_batch(engine, job_id=job, model_version_id=version_id, tagged=[Tagged(image_id, [(night, 0.9)])])
        else:
            record_batch(engine, job_id=job, model_version_id=None, refused=[Refused(image_id, outcome)])
        return job

    run("tagged")
    [image] = find_images(sessions, "s/a.jpg", storage_url=url)
    assert latest_failure(sessions, image) is None
    failed = run("corrupt or truncated image: broken data stream")  # the file was replaced by a truncated one
    [image] = find_images(sessions, "s/a.jpg", storage_url=url)
    failure = latest_failure(sessions, image)
    assert failure is not None and (failure.job_id, failure.reason) == (
        failed,
        "corrupt or truncated image: broken data stream",
    )
    shown = _results(settings, "s/a.jpg", url)
    assert shown.returncode == 1, shown.stderr
    [row] = json.loads(shown.stdout)
    assert row["latest_failure"]["job_id"] == failed and [s["tag"] for s in row["suggestions"]] == ["night"]
    run("tagged")  # fixed and tagged again: the failure is history (`tagger results` exits 0 then)
    [image] = find_images(sessions, "s/a.jpg", storage_url=url)
    assert latest_failure(sessions, image) is None
