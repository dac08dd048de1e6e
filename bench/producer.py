"""How fast `tagger tag` enqueues keys, and how much memory it holds while doing so (a measurement, not a test).

    python bench/producer.py                       # 100k and 1M keys; key file and folder; SQLite and PostgreSQL
    python bench/producer.py --counts 100000       # quicker

Each run is the real command, `tagger tag SOURCE` with a broker configured (an embedded Redis and no
worker: it only enqueues), timed from its start to its exit, with its peak resident memory
(the child's own VmHWM). Keys/s = keys / wall seconds, so it includes the interpreter's start.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_folder(root: Path, count: int) -> None:
    """`count` empty .jpg files in folders of 1,000 (the producer never reads them)."""
    for start in range(0, count, 1000):
        folder = root / f"d{start // 1000:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(start, min(count, start + 1000)):
            (folder / f"{i:08d}.jpg").touch()


def write_key_file(path: Path, count: int) -> None:
    with open(path, "w") as fh:
        for start in range(0, count, 1000):
            fh.writelines(f"d{start // 1000:05d}/{i:08d}.jpg\n" for i in range(start, min(count, start + 1000)))


# `python -m tagger tag SOURCE`, which writes its own peak resident memory (VmHWM) to a file at exit.
# (A child's ru_maxrss would not do: Linux carries the forking parent's peak across exec, and this
# benchmark's own process holds torch.)
_CHILD = """
import atexit, runpy, sys
path = sys.argv[1]
def peak():
    with open("/proc/self/status") as fh, open(path, "w") as out:
        out.write(next(line.split()[1] for line in fh if line.startswith("VmHWM:")))
atexit.register(peak)
sys.argv = ["tagger", *sys.argv[3:]]
runpy.run_module("tagger", run_name="__main__")
"""


def run(env: dict[str, str], source: Path, count: int, log: Path) -> tuple[float, float]:
    """(keys/s, peak RSS in MB) of one `tagger tag SOURCE`, timed from its start to its exit."""
    peak_file = log.with_suffix(".peak")
    start = time.perf_counter()
    with open(log, "ab") as out:
        cmd = [sys.executable, "-c", _CHILD, str(peak_file), "-", "tag", str(source)]
        code = subprocess.run(cmd, env=env, stdout=out, stderr=out).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(log.read_text()[-2000:])
    return count / seconds, int(peak_file.read_text()) / 1024  # VmHWM is in kB


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", default="100000,1000000", help="numbers of keys (default 100000,1000000)")
    p.add_argument("--batch", type=int, default=32, help="TAGGER_BATCH_SIZE (default 32)")
    p.add_argument("--databases", default="sqlite,postgresql")
    args = p.parse_args()

    from tagger.broker.embedded import EmbeddedRedis
    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.processes import child_env
    from tagger.settings import Settings
    from tests.conftest import make_model
    from tests.support.servers import Postgres

    counts = [int(c) for c in args.counts.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tagger-producer-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        redis = stack.enter_context(EmbeddedRedis())
        pg = None
        for count in counts:
            folder, key_file = work / f"folder-{count}", work / f"keys-{count}.txt"
            write_folder(folder, count)
            write_key_file(key_file, count)
            for database in args.databases.split(","):
                if database == "postgresql":
                    if pg is None:
                        pg = Postgres().start()
                        stack.callback(pg.destroy)
                    url = pg.create_database(f"p{count}_{len(rows)}")
                else:
                    url = f"sqlite:///{work}/p{count}_{len(rows)}.db"
                settings = Settings(
                    var_dir=work / "var",
                    database_url=url,
                    broker_url=redis.url,
                    batch_size=args.batch,
                    model_store=(work / "models").as_uri(),
                    storage_url=folder.as_uri(),
                )
                engine = make_engine(url)
                upgrade(engine)
                make_model(settings, make_sessionmaker(engine), size=32)
                engine.dispose()
                env = child_env(settings)
                for kind, source in (("key file", key_file), ("folder", folder)):
                    rate, peak = run(env, source, count, work / "producer.log")
                    rows.append((count, database, kind, rate, peak))
                    print(
                        f"{count:>9,} keys  {database:<10} {kind:<8} {rate:>9,.0f} keys/s  peak {peak:,.0f} MB",
                        flush=True,
                    )
    print("\n| keys | database | source | keys/s | peak RSS MB |\n|---:|---|---|---:|---:|")
    for count, database, kind, rate, peak in rows:
        print(f"| {count:,} | {database} | {kind} | {rate:,.0f} | {peak:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
