"""What the benchmarks share: a database to run against, and a process tree's resident memory and CPU time."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil


def database(stack: ExitStack, kind: str, folder: Path, name: str) -> str:
    """The URL of an empty database: a PostgreSQL started for the run (destroyed with `stack`), or a SQLite file
    in `folder`."""
    if kind == "sqlite":
        return f"sqlite:///{folder / (name + '.db')}"
    from tests.support.servers import Postgres

    server = Postgres().start()
    stack.callback(server.destroy)
    return server.create_database(name)


def _sum(pid: int, measure: Callable[[psutil.Process], float]) -> float:
    """`measure` summed over `pid` and every live descendant (a prefork worker's pool processes)."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in tree:
        try:
            total += measure(proc)
        except psutil.NoSuchProcess:  # it exited while we looked
            continue
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants, in MB."""
    return _sum(pid, lambda p: p.memory_info().rss) / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants."""
    return _sum(pid, lambda p: sum(p.cpu_times()[:2]))


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` alone (a worker's main process, without its pool)."""
    try:
        return float(sum(psutil.Process(pid).cpu_times()[:2]))
    except psutil.NoSuchProcess:
        return 0.0


def small_model_options(parser: Any) -> None:
    """The options of a benchmark that trains a small model on generated stills, through the real recipe."""
    parser.add_argument("--arch", default="mobilenet_v3_small")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)


def train_small(root: Path, labelled: Any, args: Any, *extra: str) -> tuple[Any, Any]:
    """`tagger train`'s recipe in this process, from random weights, on `labelled` (a LabelledSet): the
    model store and plots under `root`; `extra` are more `tagger train` options. (report, candidate)."""
    from tagger.settings import Settings
    from tagger.training.options import get_args_parser
    from tagger.training.recipe import main as recipe

    settings = Settings(var_dir=root / "var", model_store=(root / "models").as_uri(), device="cpu")  # type: ignore[call-arg]
    train_args = get_args_parser().parse_args(
        ["--labels", "given", "--random-init", "--arch", args.arch, "--size", str(args.size), "--lr-spread", "1"]
        + ["--epochs", str(args.epochs), "--freeze-epochs", "0", "--seed", str(args.seed)]
        + ["--plots", str(root / "plots"), *extra]
    )
    report, candidate = recipe(train_args, settings, labelled)
    return report, candidate
