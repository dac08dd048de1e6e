"""Peak memory of `tagger export --format xmp` against the archive's size (a measurement, not a test).

    python bench/xmp.py                          # 10,000 and 100,000 images, SQLite
    python bench/xmp.py --images 5000 50000      # smaller, on a busy machine

For each size: a fresh SQLite database with one active version over 20 tags, that many tagged images
with 3 suggestions each and a decision on one in a hundred, then the export itself (its function, with
the command's page size) in a child process of its own that reports its peak resident memory
(VmHWM) before and after the export, and the rate. Flat means the peak does not grow with the size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TAGS = [f"tag{i:02d}" for i in range(20)]


def populate(url: str, count: int) -> None:
    """`count` images tagged by the active version, 3 suggestions each, a decision on every hundredth."""
    from sqlalchemy import insert, update

    from tagger import registry
    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.db.images import image_ids, storage_id
    from tagger.db.schema import Image, Label, Suggestion
    from tagger.model.meta import ArtifactMeta

    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    rng = random.Random(0)
    with sessions() as session, session.begin():
        meta = ArtifactMeta(version="v1", arch="resnet18", tags=TAGS, input_size=32)
        registry.register(session, meta, uri="file:///models/v1", activate_if_none=False)
        registry.activate(session, "v1")
        version = registry.get(session, "v1").id
        tag_ids = registry.ensure_tags(session, TAGS)
        storage = storage_id(session, "file:///archive")
    for start in range(0, count, 5000):
        keys = [f"roll{i // 1000:04d}/still{i:07d}.jpg" for i in range(start, min(count, start + 5000))]
        with sessions() as session, session.begin():
            ids = list(image_ids(session, storage, keys).values())
            session.execute(update(Image).where(Image.id.in_(ids)).values(model_version_id=version))
            rows = [
                {"image_id": i, "tag_id": tag_ids[t], "model_version_id": version, "probability": rng.random()}
                for i in ids
                for t in rng.sample(TAGS, 3)
            ]
            session.execute(insert(Suggestion), rows)
            decided = [{"image_id": i, "tag_id": tag_ids[TAGS[0]], "positive": True, "source": "accepted"} for i in ids]
            session.execute(insert(Label), decided[::100])
    engine.dispose()


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent it forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def child(url: str, out: str, var: str) -> None:
    """The export alone, in this process; prints its peak memory before and after, and its time."""
    from tagger.db import make_engine, make_sessionmaker
    from tagger.storage import LocalStorage
    from tagger.xmp.export import XmpExport, export_xmp

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    job = XmpExport(storage_url="file:///archive", target=LocalStorage(out))
    before = peak_mb()
    started = time.perf_counter()
    report = export_xmp(sessions, job, var_dir=Path(var))
    seconds = time.perf_counter() - started
    after = peak_mb()
    print(json.dumps({"written": report.written, "seconds": seconds, "peak_before_mb": before, "peak_mb": after}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--child", nargs=3, metavar=("URL", "OUT", "VAR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print("| images | sidecars written | seconds | images/s | peak RSS before export | peak RSS after |")
    print("|---:|---:|---:|---:|---:|---:|")
    for count in args.images:
        with tempfile.TemporaryDirectory(prefix="tagger-bench-xmp-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'tagger.db'}"
            populate(url, count)
            done = subprocess.run(
                [sys.executable, __file__, "--child", url, str(Path(tmp) / "out"), str(Path(tmp) / "var")],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"| {count:,} | {r['written']:,} | {r['seconds']:.1f} | {r['written'] / r['seconds']:,.0f} | "
                f"{r['peak_before_mb']:.0f} MB | {r['peak_mb']:.0f} MB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
