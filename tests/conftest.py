"""Session-wide real servers and small factories. Servers that cannot start fail the run.

The tests sit in tiers by folder, and each test is marked by its folder here (never by a decorator):
tests/unit (pure, in-process: `make test-unit`), tests/integration (real servers driven in-process),
tests/system (real processes), tests/gpu and tests/meta. tests/support holds the helpers, not tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tagger.settings import Settings
from tests.support.servers import PgBouncer, Postgres, SeaweedS3

TIERS = ("unit", "integration", "system", "gpu", "meta")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its tier folder (tests/<tier>/...); a test outside every tier folder is an error.

    The slow tiers run first (system, meta, integration; the longest files first) and the many short unit
    tests last: under pytest-xdist (`make test`: `-n 2 --dist loadfile --no-loadscope-reorder`, each file in
    one process, so a module-scoped fleet or site is built once, in this order) the short files fill the
    processes' last gaps. Within a file the order stays as written.
    """
    root = Path(__file__).parent
    rank = {tier: i for i, tier in enumerate(("system", "gpu", "meta", "integration", "unit"))}
    items.sort(key=lambda item: (rank.get(_tier(item, root), len(rank)), _slow_rank(item)))
    for item in items:
        tier = _tier(item, root)
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test belongs in one of tests/{{{','.join(TIERS)}}}/")
        item.add_marker(tier)


# The longest files (minutes each; docs/development.md, Suite time), started first so that no process is
# left with one at the end.
SLOW_FIRST = (
    "test_review.py",
    "test_training_lr.py",
    "test_training.py",
    "test_production.py",
    "test_training_gate.py",
    "test_faults.py",
    "test_real_inputs.py",
)


def _slow_rank(item: pytest.Item) -> int:
    return SLOW_FIRST.index(item.path.name) if item.path.name in SLOW_FIRST else len(SLOW_FIRST)


def _tier(item: pytest.Item, root: Path) -> str:
    return item.path.relative_to(root).parts[0] if item.path.is_relative_to(root) else ""


# Tests must not pick up a developer's own TAGGER_* configuration.
for _var in [v for v in os.environ if v.startswith("TAGGER_")]:
    del os.environ[_var]

# One torch (OpenMP) thread in this process and every child (`tagger train`, workers, `tagger serve`): `make
# test` runs two pytest processes on two cores, each starting children, and threads beyond the cores spin
# against each other. A `tagger train --find-lr` beside a loaded suite took 99 CPU-seconds with torch's
# default threads and 34 with one (docs/development.md, Suite time). What a test asserts never depends on it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    from tagger.broker.embedded import EmbeddedRedis

    server = EmbeddedRedis().start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL for the session; with TESTS_POSTGRES_PORT set (`make mutation` starts one server for
    hundreds of runs), that running server instead of a new one."""
    port = os.environ.get("TESTS_POSTGRES_PORT")
    if port:
        yield Postgres.running(int(port))
        return
    server = Postgres().start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def pgbouncer(postgres: Postgres) -> Iterator[PgBouncer]:
    """Debian's PgBouncer in transaction pooling before the session's PostgreSQL, two server connections."""
    server = PgBouncer(postgres).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[SeaweedS3]:
    server = SeaweedS3().start()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())  # boto3 reads the endpoint and credentials from here
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tagger.db'}"
    server: Postgres = request.getfixturevalue("postgres")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
def local(tmp_path: Path) -> Settings:
    """SQLite with an active model, and no broker: `tagger tag` starts its own Redis and workers (the
    first steps of docs/tour.md). No server: unit tests use it too."""
    from tagger.db import make_engine, make_sessionmaker, upgrade

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'tagger.db'}")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    make_model(settings, make_sessionmaker(engine))
    engine.dispose()
    return settings


def make_settings(tmp_path: Path, database_url: str, **extra: object) -> Settings:
    values: dict[str, object] = {
        "var_dir": tmp_path / "var",
        "database_url": database_url,
        "model_store": (tmp_path / "models").as_uri(),
        "batch_size": 8,
        "fetch_threads": 4,
        "device": "cpu",
        "worker_concurrency": 1,
    }
    return Settings(**(values | extra))  # type: ignore[arg-type]


@pytest.fixture
def sessions(settings: Settings) -> Iterator[object]:
    from tagger.db import make_engine, make_sessionmaker, upgrade

    engine = make_engine(settings.database_url)
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def engine(sessions: object) -> object:
    """The engine the `sessions` fixture is bound to (the sink writes through an engine)."""
    return sessions.kw["bind"]  # type: ignore[attr-defined]


def make_model(
    settings: Settings,
    sessions: object,
    *,
    tags: tuple[str, ...] | None = None,
    size: int = 32,
    arch: str = "resnet18",
    seed: int = 0,
    activate: bool = True,
    favour: str | None = None,
) -> str:
    """A randomly initialised model saved as a real artifact and registered; returns its version.

    With `favour`, the head ignores the image and suggests that one tag, and only it, for every image:
    rows a version wrote can then be told apart from another version's by their tag.
    """
    import torch

    from tagger import registry
    from tagger.model import artifact
    from tagger.model.architectures import build_model
    from tagger.model.meta import ArtifactMeta, new_version
    from tagger.sample_archive import TAGS
    from tagger.storage import open_storage

    tags = tags or TAGS
    torch.manual_seed(seed)
    model = build_model(arch, len(tags))
    if favour is not None:
        with torch.no_grad():
            model.fc.weight.zero_()  # type: ignore[union-attr,operator]
            model.fc.bias.fill_(-20.0)  # type: ignore[union-attr,operator]
            model.fc.bias[list(tags).index(favour)] = 20.0  # type: ignore[index,union-attr]
    meta = ArtifactMeta(version=new_version("t"), arch=arch, tags=list(tags), input_size=size)
    store = open_storage(settings.model_store)
    meta = artifact.save(model, meta, store)
    with sessions() as session, session.begin():  # type: ignore[operator]
        registry.register(session, meta, uri=f"{store.url}/{meta.version}", activate_if_none=False)
        if activate:
            registry.activate(session, meta.version)
    return meta.version


def write_stills(root: Path, count: int, *, seed: int = 0) -> list[str]:
    from tagger.sample_archive import generate

    return [s.key for s in generate(root, count, seed=seed)]


def write_bad_files(root: Path) -> dict[str, str]:
    """A corrupt JPEG, an empty file and a text file named .jpg; returns key -> expected reason fragment."""
    stills = root / "stills"
    stills.mkdir(parents=True, exist_ok=True)
    good = next(stills.glob("*.jpg")).read_bytes()
    (stills / "corrupt.jpg").write_bytes(good[:200] + b"\x00garbage" * 50)
    (stills / "empty.jpg").write_bytes(b"")
    (stills / "notes.jpg").write_text("<html><body>not an image</body></html>")
    return {
        "stills/corrupt.jpg": "corrupt or truncated",
        "stills/empty.jpg": "empty file",
        "stills/notes.jpg": "not a recognised image",
    }


def submit_keys(
    sessions: object, send: object, keys: list[str], *, storage_url: str, batch_size: int = 4, **spec: object
):  # type: ignore[no-untyped-def]
    """A job over explicit keys, through the real producer (JobSpec -> database -> broker)."""
    from tagger.jobs.producer import submit
    from tagger_client.contract import JobSpec

    return submit(
        sessions,  # type: ignore[arg-type]
        send,  # type: ignore[arg-type]
        JobSpec.new(keys=list(keys), storage_url=storage_url, batch_size=batch_size, **spec),
        Settings(),
    )


def new_job(sessions: object, storage_url: str, *, batch_size: int = 4, idempotency_key: str | None = None):  # type: ignore[no-untyped-def]
    """A job row with no items yet (fill_job fills it)."""
    from tagger.jobs.producer import create_job
    from tagger.storage import canonical_url
    from tagger_client.contract import JobSpec

    url = canonical_url(storage_url)
    spec = JobSpec.new(keys=[], storage_url=url, batch_size=batch_size, idempotency_key=idempotency_key)
    return create_job(sessions, spec, source="test", storage_url=url, batch_size=batch_size)  # type: ignore[arg-type]


def fill_job(  # type: ignore[no-untyped-def]
    sessions, job_id: str, keys: list[str], storage_url: str, *, batch_size: int = 4, send=None
) -> dict[str, int]:
    """Enqueue `keys` into the job through the real producer and complete its listing; key -> image id."""
    from sqlalchemy import select

    from tagger.db.schema import Image, JobItem, Storage
    from tagger.jobs.producer import complete_listing, enqueue_keys
    from tagger.jobs.sources import PassedOver
    from tagger.storage import canonical_url

    url = canonical_url(storage_url)
    sender = send or (lambda *a: None)
    enqueue_keys(
        sessions, sender, job_id=job_id, keys=keys, storage_url=url, batch_size=batch_size, queue="tagger.bulk"
    )
    complete_listing(sessions, sender, job_id, PassedOver())
    with sessions() as session:
        rows = session.execute(
            select(Image.key, Image.id)
            .join(Storage, Storage.id == Image.storage_id)
            .join(JobItem, JobItem.image_id == Image.id)
            .where(Storage.url == url, JobItem.job_id == job_id)
        ).all()
    return {key: image_id for key, image_id in rows}
