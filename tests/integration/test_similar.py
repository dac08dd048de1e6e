"""Embeddings and similar stills on SQLite and real PostgreSQL (pgvector): the sink keeps one vector per
image behind its fence, a search finds an image and its near-copies first, an upload is searched without
becoming a row, and a new active version says how many images await their vectors. The HTTP routes and
the client run against a real uvicorn server in this process."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select, text

from tagger import registry
from tagger.db.schema import Embedding, Image
from tagger.db.vectors import prune_vectors, vector_of
from tagger.errors import ConfigError, NotFoundError
from tagger.settings import Settings
from tagger.similar import similar_to_image, similar_to_vector
from tagger.uploads import Embedder
from tagger.worker.inference import suggestion_rows
from tagger.worker.sink import TaggedRows, record_batch
from tests.conftest import fill_job, make_model, new_job, write_stills


def _jpeg(img: PILImage.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _archive(root: Path, count: int = 8) -> tuple[list[str], list[str]]:
    """`count` generated stills and two near-copies of the first (re-encoded at quality 40; resized to 3/4)."""
    keys = write_stills(root, count, seed=3)
    first = PILImage.open(root / keys[0])
    copies = {"copies/low-quality.jpg": _jpeg(first, 40)}
    copies["copies/smaller.jpg"] = _jpeg(first.resize((first.width * 3 // 4, first.height * 3 // 4)), 85)
    for key, data in copies.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    return keys, list(copies)


def _tag(sessions: Any, engine: Any, root: Path, keys: list[str], *, deliveries: int = 1) -> dict[str, int]:
    """What a worker does with one batch, without Celery: the active version embeds and scores the stills
    (`infer`), the sink writes them (`deliveries` times, as a redelivered batch); key -> image id."""
    job = new_job(sessions, root.as_uri(), batch_size=len(keys)).job_id
    ids = fill_job(sessions, job, keys, root.as_uri(), batch_size=len(keys))
    model = Embedder(sessions).current()  # the loading a worker does
    import torch

    batch = torch.stack([model.preprocess((root / k).read_bytes()) for k in keys])
    out = model.infer(batch)
    rows = suggestion_rows(out.probs, model.thresholds, [ids[k] for k in keys], model.tag_ids, out.embeddings)
    for _ in range(deliveries):
        record_batch(engine, job_id=job, model_version_id=model.version_id, tagged=rows)
    return ids


def _vectors(sessions: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Embedding)) or 0)


def test_the_sink_writes_one_vector_per_image_and_a_redelivered_batch_none(
    settings: Settings, sessions: Any, engine: Any, tmp_path: Path
) -> None:
    make_model(settings, sessions, tags=("a", "b"))
    keys = write_stills(tmp_path, 3, seed=1)
    job = new_job(sessions, tmp_path.as_uri(), batch_size=3).job_id
    ids = fill_job(sessions, job, keys, tmp_path.as_uri(), batch_size=3)
    with sessions() as session:
        version = registry.active(session).id
    image_ids = [ids[k] for k in keys]
    rng = np.random.default_rng(0)

    def delivery(ids: list[int]) -> TaggedRows:  # each delivery's model run gives (slightly) different numbers
        vectors = rng.standard_normal((len(ids), 16)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return TaggedRows(ids, [], [], [], vectors=vectors.astype(np.float16))

    # A part of the batch written first (a split redelivery), then the whole batch, then the whole batch again.
    first, whole = delivery(image_ids[:2]), delivery(image_ids)
    counts = [record_batch(engine, job_id=job, model_version_id=version, tagged=rows) for rows in (first, whole, whole)]
    assert [c.done for c in counts] == [2, 1, 0]
    assert _vectors(sessions) == 3  # the redeliveries wrote no second vector, and overwrote none
    with sessions() as session:
        stored = [vector_of(session, version, i) for i in image_ids]
    expected = [first.vectors[0], first.vectors[1], whole.vectors[2]]  # type: ignore[index]
    assert all(np.array_equal(v, e.astype(np.float32)) for v, e in zip(stored, expected, strict=True))
    with pytest.raises(ValueError, match="2 vectors for 3"):
        TaggedRows(image_ids, [], [], [], vectors=first.vectors)


def test_similar_by_id_finds_the_image_itself_then_its_near_copies(
    settings: Settings, sessions: Any, engine: Any, tmp_path: Path
) -> None:
    make_model(settings, sessions)
    keys, copies = _archive(tmp_path)
    ids = _tag(sessions, engine, tmp_path, keys + copies, deliveries=2)
    assert _vectors(sessions) == len(keys) + len(copies)
    found = similar_to_image(sessions, ids[keys[0]], limit=5)
    assert found.hits[0].key == keys[0] and {h.key for h in found.hits[1:3]} == set(copies)
    assert found.hits[0].similarity == pytest.approx(1.0, abs=1e-3)
    assert found.hits[2].similarity > max(h.similarity for h in found.hits[3:])
    assert found.awaiting_vectors == 0 and len(found.hits) == 5
    above = similar_to_image(sessions, ids[keys[0]], limit=100, min_similarity=found.hits[2].similarity)
    assert [h.key for h in above.hits] == [h.key for h in found.hits[:3]]
    with pytest.raises(NotFoundError, match="no image with id"):
        similar_to_image(sessions, 10**9)


def test_a_new_active_version_searches_its_own_space_and_counts_the_images_awaiting_vectors(
    settings: Settings, sessions: Any, engine: Any, tmp_path: Path
) -> None:
    first = make_model(settings, sessions)
    keys, copies = _archive(tmp_path, count=4)
    ids = _tag(sessions, engine, tmp_path, keys + copies)
    make_model(settings, sessions, seed=1)  # a hot swap: the new version has embedded nothing yet
    with pytest.raises(NotFoundError, match="no embedding from the active model"):
        similar_to_image(sessions, ids[keys[0]])
    version_id, vector = Embedder(sessions).embed((tmp_path / keys[0]).read_bytes())
    found = similar_to_vector(sessions, vector, version_id=version_id)
    assert (found.hits, found.awaiting_vectors) == ([], len(keys) + len(copies))
    _tag(sessions, engine, tmp_path, keys[:2])  # two of them re-tagged by the active version
    found = similar_to_vector(sessions, vector, version_id=version_id)
    assert [h.key for h in found.hits][:1] == [keys[0]] and found.awaiting_vectors == len(keys) + len(copies) - 2
    with sessions() as session, session.begin():
        kept = registry.active(session).id
        assert prune_vectors(session, [kept]) == len(keys) + len(copies)  # the first version's vectors go
        assert vector_of(session, registry.get(session, first).id, ids[keys[0]]) is None
        if session.get_bind().dialect.name == "postgresql":
            indexes = session.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings'"))
            assert not [n for n in indexes if n.startswith("ix_embeddings_hnsw_v")]  # no worker made one here
    assert _vectors(sessions) == 2


def test_each_versions_index_is_built_off_the_hot_path_and_a_search_reads_it_and_the_images_past_it(
    postgres: Any, tmp_path: Path
) -> None:
    """PostgreSQL: the index holds a version's images up to its cutoff (the sink's new ones never touch it);
    a search reads it for those, scans the rest, and finds the best of both."""
    from pgvector import HalfVector

    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.db.vectors import index_name, index_vectors, search_sql
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, postgres.create_database("hnsw_index"))
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions)
    with sessions() as session:
        version = registry.active(session).id
    keys, copies = _archive(tmp_path, count=6)
    ids = _tag(sessions, engine, tmp_path, keys)  # the first job: no index yet, every search is exact
    assert index_vectors(engine, version) is None  # too few images past (no) index to be worth one
    cutoff = index_vectors(engine, version, min_tail=1)
    assert cutoff == max(ids.values()) and index_vectors(engine, version, min_tail=1) is None
    copy_ids = _tag(sessions, engine, tmp_path, copies)  # a later job: its images are past the cutoff
    assert min(copy_ids.values()) > cutoff
    with sessions() as session, session.begin():
        for scan in ("seqscan", "bitmapscan", "sort"):  # a table this small would be read whole and sorted
            session.execute(text(f"SET LOCAL enable_{scan} = off"))
        query = vector_of(session, version, ids[keys[0]])
        assert query is not None
        plan = "\n".join(
            session.scalars(
                text("EXPLAIN " + search_sql(version, 512, cutoff, "indexed")),
                {"q": HalfVector(query).to_text(), "limit": 5},
            )
        )
    assert index_name(version, cutoff) in plan
    found = similar_to_image(sessions, ids[keys[0]], limit=3)  # itself from the index, its copies past it
    assert found.hits[0].key == keys[0] and {h.key for h in found.hits[1:]} == set(copies)
    newer = index_vectors(engine, version, min_tail=1)  # a new index up to the copies replaces the old one
    with sessions() as session:
        names = set(session.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings'")))
    assert newer == max(copy_ids.values()) and index_name(version, newer) in names
    assert index_name(version, cutoff) not in names
    assert [h.key for h in similar_to_image(sessions, ids[keys[0]], limit=3).hits] == [h.key for h in found.hits]
    engine.dispose()


def test_a_role_that_may_not_create_pgvector_is_told_whom_to_ask(postgres: Any) -> None:
    from tagger.db import make_engine, upgrade

    admin = make_engine(postgres.url())
    with admin.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("DROP DATABASE IF EXISTS plain_owner"))
        conn.execute(text("DROP ROLE IF EXISTS plain_owner"))
        conn.execute(text("CREATE ROLE plain_owner LOGIN"))
        conn.execute(text("CREATE DATABASE plain_owner OWNER plain_owner"))
    admin.dispose()
    engine = make_engine(postgres.url("plain_owner").replace("postgres@", "plain_owner@"))
    with pytest.raises(ConfigError, match=r"ask a superuser to run `CREATE EXTENSION vector;` in that database"):
        upgrade(engine)
    engine.dispose()


# --- the HTTP routes and the client, against a real server in this process ---------------------


@contextmanager
def _served(settings: Settings, sessions: Any) -> Iterator[str]:
    """`tagger serve`'s app in uvicorn, on a thread of this process; its base URL."""
    import uvicorn

    from tagger.processes import free_port
    from tagger.web.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, sessions), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def served(settings: Settings, sessions: Any, engine: Any, redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    from dataclasses import replace

    from tagger.tokens import create

    make_model(settings, sessions)
    keys, copies = _archive(tmp_path / "archive")
    ids = _tag(sessions, engine, tmp_path / "archive", keys + copies)
    settings = replace(settings, broker_url=redis_url, api_max_body_bytes=200_000)
    with _served(settings, sessions) as base:
        yield {
            "base": base,
            "token": create(sessions, "reader", "read"),
            "root": tmp_path / "archive",
            "keys": keys,
            "copies": copies,
            "ids": ids,
            "settings": settings,
        }


def _images(sessions: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Image)) or 0)


def test_the_api_and_the_client_search_by_image_and_by_upload_without_storing_it(
    served: dict[str, Any], sessions: Any
) -> None:
    from tagger_client import ImageNotFound, InvalidSubmission, TaggerClient

    base, token, root, keys = served["base"], served["token"], served["root"], served["keys"]
    auth = {"Authorization": f"Bearer {token}"}
    first = served["ids"][keys[0]]
    by_id = httpx.get(f"{base}/api/v1/images/{first}/similar", params={"limit": 3}, headers=auth, timeout=60)
    assert by_id.status_code == 200, by_id.text
    assert [i["key"] for i in by_id.json()["images"]][0] == keys[0] and by_id.json()["awaiting_vectors"] == 0
    assert set(i["key"] for i in by_id.json()["images"][1:]) == set(served["copies"])
    assert httpx.get(f"{base}/api/v1/images/{first}/similar").status_code == 401

    before = _images(sessions)
    upload = _jpeg(PILImage.open(root / keys[0]), 60)  # a re-encode the archive does not hold
    answer = httpx.post(f"{base}/api/v1/images/similar", content=upload, headers=auth, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["images"][0]["key"] in [keys[0], *served["copies"]]
    corrupt = httpx.post(f"{base}/api/v1/images/similar", content=upload[:300], headers=auth, timeout=60)
    assert corrupt.status_code == 422 and "not an image" in corrupt.json()["detail"], corrupt.text
    big = httpx.post(f"{base}/api/v1/images/similar", content=b"\xff" * 300_000, headers=auth, timeout=60)
    assert big.status_code == 413
    schema = httpx.get(f"{base}/api/v1/openapi.json", headers=auth, timeout=60).json()
    assert {"/api/v1/images/{image_id}/similar", "/api/v1/images/similar"} <= set(schema["paths"])

    settings = served["settings"]
    with TaggerClient(
        broker_url=settings.broker_url, database_url=settings.database_url, api_url=base, api_token=token
    ) as client:
        found = client.similar(keys[0], limit=3)
        assert found.images[0].key == keys[0] and found.awaiting_vectors == 0
        assert client.similar(upload=upload).images[0].key in [keys[0], *served["copies"]]
        with pytest.raises(InvalidSubmission, match="not an image"):
            client.similar(upload=b"not a picture")
        with pytest.raises(ImageNotFound):
            client.similar("no/such.jpg")
    assert _images(sessions) == before  # the uploads made no image row


# --- duplicates as groups ----------------------------------------------------------------------


def _unit(*parts: tuple[int, float]) -> np.ndarray:
    v = np.zeros(16, dtype=np.float32)
    for axis, weight in parts:
        v[axis] = weight
    return v / np.linalg.norm(v)


# A chain (a~b 0.944, b~c 0.963, a~c only 0.819: one group at 0.94, through b), a close pair (0.995), and
# four stills like nothing else.
GROUPED = {
    "a.jpg": _unit((0, 1)),
    "b.jpg": _unit((0, 1), (1, 0.35)),
    "c.jpg": _unit((0, 1), (1, 0.7)),
    "d.jpg": _unit((2, 1)),
    "e.jpg": _unit((2, 1), (3, 0.1)),
    **{f"single{i}.jpg": _unit((4 + i, 1)) for i in range(4)},
}


def registry_version(sessions: Any) -> str:
    with sessions() as session:
        return registry.active(session).version


def test_duplicates_are_connected_groups_over_the_pairs_above_the_threshold_paged_and_served(
    settings: Settings, sessions: Any, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from dataclasses import replace

    from tagger.cli import main
    from tagger.db.vectors import write_vectors
    from tagger.duplicates import find_duplicates
    from tagger.labels import LabelledSet
    from tagger.tokens import create
    from tagger.training.groups import group_labelled

    make_model(settings, sessions)
    keys = list(GROUPED)
    job = new_job(sessions, tmp_path.as_uri(), batch_size=16).job_id
    ids = fill_job(sessions, job, [*keys, "untagged-yet.jpg"], tmp_path.as_uri(), batch_size=16)
    with sessions() as session, session.begin():
        version = registry.active(session).id
        write_vectors(session, version, [ids[k] for k in keys], np.stack(list(GROUPED.values())).astype(np.float16))
        session.execute(Image.__table__.update().values(model_version_id=version))  # all tagged, one not embedded

    def groups(found: Any) -> list[list[str]]:
        return [[m.key for m in g.members] for g in found.groups]

    found = find_duplicates(sessions, threshold=0.94)
    assert groups(found) == [["a.jpg", "b.jpg", "c.jpg"], ["d.jpg", "e.jpg"]] and found.awaiting_vectors == 1
    assert found.groups[0].similarity == pytest.approx(0.944, abs=0.005) and found.next_cursor is None
    assert groups(find_duplicates(sessions, threshold=0.95)) == [["b.jpg", "c.jpg"], ["d.jpg", "e.jpg"]]
    assert groups(find_duplicates(sessions, threshold=0.94, min_size=3)) == [["a.jpg", "b.jpg", "c.jpg"]]
    first = find_duplicates(sessions, threshold=0.94, limit=1)
    assert groups(first) == [["a.jpg", "b.jpg", "c.jpg"]] and first.next_cursor == ids["a.jpg"]
    rest = find_duplicates(sessions, threshold=0.94, limit=1, cursor=first.next_cursor)
    assert groups(rest) == [["d.jpg", "e.jpg"]] and rest.next_cursor is None

    # The split of `tagger train --group-embeddings` joins the same pairs from the stored vectors (no file: no
    # fingerprint pairs), with the fingerprints' pairs where the images can be read.
    labelled = LabelledSet([*keys, "unembedded.jpg"], [["x"]] * (len(keys) + 1)).under(tmp_path.as_uri())
    near = group_labelled(labelled, sessions=sessions, threshold=0.94)
    assert sorted(near.pairs) == [("a.jpg", "b.jpg"), ("b.jpg", "c.jpg"), ("d.jpg", "e.jpg")]
    assert f"the embeddings of {registry_version(sessions)} ({len(keys)} of the images)" in near.source
    assert near.labelled.groups[:5] == ["a.jpg"] * 3 + ["d.jpg"] * 2

    for name, value in replace(settings, duplicate_threshold=0.94).as_env().items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["duplicates", "--json", "--threshold", "0.95"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [[i["key"] for i in g["images"]] for g in answer["groups"]] == [["b.jpg", "c.jpg"], ["d.jpg", "e.jpg"]]
    assert main(["duplicates"]) == 0  # TAGGER_DUPLICATE_THRESHOLD's 0.94: the chain is one group
    assert "2 groups of near-identical stills (5 stills) at similarity 0.94" in capsys.readouterr().out

    with _served(replace(settings, duplicate_threshold=0.94, broker_url=redis_url), sessions) as base:
        auth = {"Authorization": f"Bearer {create(sessions, 'reader', 'read')}"}
        page = httpx.get(f"{base}/api/v1/duplicates", params={"limit": 1}, headers=auth, timeout=60)
        assert page.status_code == 200, page.text
        assert [i["key"] for i in page.json()["groups"][0]["images"]] == ["a.jpg", "b.jpg", "c.jpg"]
        after = httpx.get(
            f"{base}/api/v1/duplicates",
            params={"limit": 1, "cursor": page.json()["next_cursor"], "threshold": 0.99},
            headers=auth,
            timeout=60,
        ).json()
        assert [[i["key"] for i in g["images"]] for g in after["groups"]] == [["d.jpg", "e.jpg"]]
        assert after["next_cursor"] is None and after["threshold"] == 0.99
        assert httpx.get(f"{base}/api/v1/duplicates").status_code == 401
        assert httpx.get(f"{base}/api/v1/duplicates", params={"threshold": 0}, headers=auth).status_code == 422
        schema = httpx.get(f"{base}/api/v1/openapi.json", headers=auth, timeout=60).json()
        assert "/api/v1/duplicates" in schema["paths"]


def test_embed_gives_images_tagged_before_embeddings_their_vectors_and_rewrites_no_suggestion(
    settings: Settings, sessions: Any, engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from sqlalchemy import delete

    from tagger.cli import main
    from tagger.db.schema import Suggestion

    make_model(settings, sessions)
    keys, copies = _archive(tmp_path, count=5)
    ids = _tag(sessions, engine, tmp_path, keys + copies)
    with sessions() as session, session.begin():
        version = registry.active(session).id
        kept = {i: vector_of(session, version, i) for i in ids.values()}
        session.execute(delete(Embedding))  # as an archive tagged before embeddings were kept

    def rows() -> tuple[list[Any], list[Any]]:
        with sessions() as session:
            suggestions = session.execute(
                select(Suggestion.__table__).order_by(*Suggestion.__table__.primary_key)
            ).all()
            images = session.execute(select(Image.__table__).order_by(Image.id)).all()
        return suggestions, images

    before = rows()
    assert before[0]
    (tmp_path / copies[0]).unlink()  # one image cannot be read any more
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TAGGER_BATCH_SIZE", "3")  # several batches
    capsys.readouterr()
    assert main(["embed"]) == 1  # one image could not be embedded
    out = capsys.readouterr().out
    assert f"embedded {len(ids) - 1} images" in out and f"not embedded: {tmp_path.as_uri()}/{copies[0]}" in out
    assert rows() == before  # no suggestion and no image row changed, byte for byte
    with sessions() as session:
        for image_id, vector in kept.items():
            now = vector_of(session, version, image_id)
            if image_id == ids[copies[0]]:
                assert now is None
            else:
                assert now is not None and vector is not None and float(now @ vector) > 0.999
    assert main(["embed"]) == 1 and "embedded 0 images" in capsys.readouterr().out  # only the unreadable one left
