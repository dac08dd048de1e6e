"""How long read-only `tagger` commands take to start and answer, as people run them (not a test).

    python bench/cli_startup.py            # each command 5 times against a small SQLite database

A read-only command should answer in under a second on 2 cores: it must not import torch or
migrate the database. Prints the median and the worst wall time per command.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COMMANDS = [
    ["--help"],
    ["jobs", "list"],
    ["models", "list"],
    ["labels", "stats"],
    ["results", "stills/still_00000.jpg"],
    ["export", "--format", "csv", "-o", os.devnull],
    ["config"],
]


def main() -> None:
    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.processes import run_tagger
    from tagger.settings import Settings
    from tests.conftest import make_model

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(var_dir=Path(tmp) / "var", database_url=f"sqlite:///{tmp}/tagger.db")
        engine = make_engine(settings.database_url)
        upgrade(engine)
        make_model(settings, make_sessionmaker(engine))
        engine.dispose()
        print(f"{'command':<40} {'median s':>9} {'worst s':>8}   (n={runs}, {os.cpu_count()} cores)")
        for argv in COMMANDS:
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                run_tagger(settings, *argv)
                times.append(time.perf_counter() - start)
            print(f"{'tagger ' + ' '.join(argv):<40} {statistics.median(times):>9.2f} {max(times):>8.2f}")


if __name__ == "__main__":
    main()
