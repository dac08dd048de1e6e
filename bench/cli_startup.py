"""How long read-only `tagger` commands take to start and answer, as people run them (not a test).

    python bench/cli_startup.py                                  # each command 5 times, SQLite
    python bench/cli_startup.py --database postgresql --workers  # PostgreSQL, and `tagger workers` on a fleet
    python bench/cli_startup.py --trees /path/to/main,.          # before/after: each command in each tree in turn

Each run is a new process (`python -m tagger ...`, its wall time from start to exit) against a small
database with one registered model and one job of 200 images; with --workers, also `tagger workers`
against an embedded Redis with one `tagger worker` running. With --trees, every command runs from each
tree in turn (its folder as the working directory and on PYTHONPATH), so a before/after shares the
machine's moment. Prints the median and the worst wall time per command and tree, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COMMANDS = [
    ["--help"],
    ["jobs", "list"],
    ["jobs", "show", "JOB", "--items", "100"],
    ["models", "list"],
    ["labels", "stats"],
    ["results", "stills/00000.jpg"],
    ["export", "--format", "csv", "-o", os.devnull],
    ["config"],
]


def timed(tree: Path, env: dict[str, str], argv: list[str]) -> float:
    """Wall seconds of `python -m tagger ARGV` run from `tree`; it must succeed."""
    own = env | {"PYTHONPATH": f"{tree}:{tree / 'api_client'}"}  # its own client too
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tagger", *argv], cwd=tree, env=own, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        said = (done.stderr + done.stdout)[-2000:]
        raise RuntimeError(f"{tree}: tagger {' '.join(argv)} exited {done.returncode}: {said}")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="?", type=int, default=5, help="runs of each command (default 5)")
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--workers", action="store_true", help="also `tagger workers`, with one worker running")
    p.add_argument("--trees", default=".", help="comma-separated source trees to compare (default: this one)")
    args = p.parse_args()

    from common import database

    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.processes import child_env
    from tagger.settings import Settings
    from tests.conftest import fill_job, make_model, new_job

    trees = [Path(t).resolve() for t in args.trees.split(",")]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        url = database(stack, args.database, Path(tmp), "startup")
        settings = Settings(var_dir=Path(tmp) / "var", database_url=url, model_store=Path(tmp, "models").as_uri())
        engine = make_engine(settings.database_url)
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        make_model(settings, sessions, size=32)
        archive = Path(tmp, "archive").as_uri()
        job = new_job(sessions, archive).job_id
        fill_job(sessions, job, [f"stills/{i:05d}.jpg" for i in range(200)], archive)
        engine.dispose()
        commands = [[job if a == "JOB" else a for a in argv] for argv in COMMANDS]
        if args.workers:
            from tagger.broker.embedded import EmbeddedRedis
            from tagger.worker.local import LocalWorkers

            # no healer: it would queue the job's 200 (absent) images, and their failures change `results`
            settings = settings.replace(broker_url=stack.enter_context(EmbeddedRedis()).url, heal_seconds=0)
            stack.enter_context(LocalWorkers(settings, count=1, log_file=Path(tmp) / "workers.log"))
            commands.append(["workers"])
            time.sleep(20)  # the worker is up and has said so (its first beat)
        env = child_env(settings)
        load = os.getloadavg()[0]
        times: dict[tuple[str, Path], list[float]] = {}
        for argv in commands:
            for _ in range(args.runs):
                for tree in trees:  # in turn: a busy moment of the machine falls on every tree alike
                    times.setdefault((" ".join(argv), tree), []).append(timed(tree, env, argv))
    print(f"\n{args.database}, {args.runs} runs each, {os.cpu_count()} cores, load average {load:.1f} -> "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| command | tree | median s | worst s |\n|---|---|---:|---:|")
    for (command, tree), seconds in times.items():
        shown = command.replace(job, "JOB")
        print(f"| `tagger {shown}` | {tree.name} | {statistics.median(seconds):.2f} | {max(seconds):.2f} |")


if __name__ == "__main__":
    main()
