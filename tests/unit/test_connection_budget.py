"""The connection budget: computed from the settings, printed by `tagger config`, and the same in the docs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tagger.cli.system import cmd_config
from tagger.settings import Settings
from tagger.worker.shape import COMMAND_CONNECTIONS, SERVE_CONNECTIONS, worker_connections

OPERATE = Path(__file__).resolve().parents[2] / "docs" / "operate.md"


@pytest.mark.parametrize("processes", [1, 2, 5])
def test_a_prefork_worker_needs_three_per_process_and_two_in_its_main_process(processes: int) -> None:
    settings = Settings(worker_concurrency=processes)
    assert worker_connections(settings, gpu=False) == 3 * processes + 2


@pytest.mark.parametrize(("batches", "expected"), [(0, 9), (1, 5), (6, 15)])
def test_a_threads_worker_needs_two_per_batch_and_three(batches: int, expected: int) -> None:
    assert worker_connections(Settings(worker_concurrency=batches), gpu=True) == expected


def test_config_prints_the_budget_and_the_docs_say_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(worker_concurrency=4)
    cmd_config(argparse.Namespace(), settings)
    printed = capsys.readouterr().out
    assert "(prefork, 4 batches at once, " in printed and f": {3 * 4 + 2}\n" in printed
    assert f"(threads, 4 batches at once): {2 * 4 + 3}" in printed
    assert f"`tagger serve`: {SERVE_CONNECTIONS};" in printed and f"`train`): {COMMAND_CONNECTIONS}" in printed
    text = OPERATE.read_text()
    for row in (
        "| a prefork `tagger worker` (the CPU default) of N processes | 3 × N + 2 |",
        "| a threads `tagger worker` (the GPU default) running B batches at once | 2 × B + 3 "
        f"({worker_connections(Settings(), gpu=True)} at the default B = 3) |",
        f"| `tagger serve` | {SERVE_CONNECTIONS} |",
        f"| any other command (`tagger tag --wait`, `jobs wait`, `train`) | {COMMAND_CONNECTIONS} |",
    ):
        assert row in text, row
