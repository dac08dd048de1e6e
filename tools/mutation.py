"""`make mutation`: mutmut over the fenced write, the claims and the job lifecycle (see pyproject's
[tool.mutmut]), with one PostgreSQL server for every mutant's test run. Prints the survivors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.servers import Postgres  # noqa: E402


def main() -> int:
    mutmut = str(Path(sys.executable).parent / "mutmut")
    shutil.rmtree("mutants", ignore_errors=True)
    server = Postgres().start()
    try:
        env = dict(os.environ, TESTS_POSTGRES_PORT=str(server.port))
        subprocess.run([mutmut, "run", "--max-children", str(os.cpu_count() or 1)], env=env, check=False)
        results = subprocess.run([mutmut, "results"], env=env, capture_output=True, text=True, check=False).stdout
    finally:
        server.destroy()
    print(results)
    survivors = [line for line in results.splitlines() if line.strip().endswith("survived")]
    print(f"{len(survivors)} surviving mutant(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
