"""The Python client for web backends: submit, status, wait, results, images by tag, similar, cancel, retry.

Writes go to the workers as Celery messages (JSON, published with kombu), so the job logic
lives in one place; reads come straight from the database (SQLAlchemy Core, read-only), except a
similar-image search, which asks `tagger serve` (`api_url`, a `read` token): an upload is embedded
by the model there, and the search code lives in one place.
Installing it pulls neither torch nor the worker code:

    pip install ./api_client        # distribution "tagger-client"

    from tagger_client import TaggerClient
    client = TaggerClient(broker_url="redis://redis:6379/0", database_url="postgresql+psycopg://...")
    job_id = client.submit(keys=["uploads/123.jpg"], priority="interactive", webhook="https://site/hooks/tags")
    client.wait(job_id, timeout=30)
    client.results("uploads/123.jpg")
    client.similar(upload=open("new.jpg", "rb").read())  # needs api_url= and api_token= above
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tagger_client import tables
from tagger_client.contract import (
    QUEUE_INTERACTIVE,
    SIMILAR_LIMIT,
    TASK_CONTROL_JOB,
    TASK_SUBMIT_JOB,
    JobSpec,
    JobState,
    MessageError,
    validate_control_kwargs,
)
from tagger_client.errors import (
    ApiUnavailable,
    BrokerUnavailable,
    ClientError,
    DatabaseUnavailable,
    ImageNotFound,
    InvalidSubmission,
    JobNotFound,
    WaitTimeout,
)
from tagger_client.paging import TagPage
from tagger_client.status import JobStatus


@dataclass(frozen=True)
class Suggestion:
    tag: str
    probability: float
    model_version: str


@dataclass(frozen=True)
class SimilarImage:
    image_id: int
    storage_url: str
    key: str
    similarity: float  # cosine similarity of the embeddings: 1 for the same picture


@dataclass(frozen=True)
class SimilarImages:
    """The nearest images, most similar first, in `model_version`'s space, and how many tagged images that
    version has not embedded yet (they cannot be among them)."""

    model_version: str
    awaiting_vectors: int
    images: list[SimilarImage]


class TaggerClient:
    def __init__(
        self,
        *,
        broker_url: str,
        database_url: str,
        api_url: str | None = None,
        api_token: str | None = None,
        api_timeout: float = 60.0,
    ) -> None:
        """`api_url` (`tagger serve`'s address, as http://host:8000) and `api_token` (a `read` token) are
        needed by `similar` only."""
        from kombu import Connection
        from sqlalchemy import create_engine

        self._connection = Connection(broker_url, transport_options={"confirm_publish": True})
        self._engine = create_engine(database_url, pool_pre_ping=True)
        self._api = (api_url.rstrip("/"), api_token) if api_url else None
        self._api_timeout = api_timeout

    def close(self) -> None:
        self._connection.release()
        self._engine.dispose()

    def __enter__(self) -> TaggerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writes: one message each -----------------------------------------------------------------

    def submit(
        self,
        *,
        keys: list[str] | None = None,
        prefix: str | None = None,
        query: str | None = None,
        tags: list[str] | None = None,
        storage_url: str | None = None,
        priority: str = "bulk",
        idempotency_key: str | None = None,
        webhook: str | None = None,
        notify_task: str | None = None,
        time_limit: float | None = None,
        batch_size: int | None = None,
        incremental: bool | None = None,
        content_hash: bool | None = None,
    ) -> str:
        """Queue a job over keys, a storage prefix, or a database query; returns its id at once.

        The same idempotency key always yields the same job id, and a second submission is a no-op. A prefix
        tags only what is new or changed since it was tagged (`incremental=False`: everything); keys are
        tagged as named. `content_hash=True` records the SHA-256 of each image's bytes and compares by it.
        """
        try:
            spec = JobSpec.new(
                keys=keys,
                prefix=prefix,
                query=query,
                tags=tags,
                storage_url=storage_url,
                priority=priority,
                idempotency_key=idempotency_key,
                webhook=webhook,
                notify_task=notify_task,
                time_limit=time_limit,
                batch_size=batch_size,
                incremental=incremental,
                content_hash=content_hash,
            )
        except MessageError as exc:
            raise InvalidSubmission(str(exc)) from None
        self._send(TASK_SUBMIT_JOB, spec.to_message(), QUEUE_INTERACTIVE)
        return spec.job_id

    def cancel(self, job_id: str) -> None:
        self._control(job_id, "cancel")

    def pause(self, job_id: str) -> None:
        self._control(job_id, "pause")

    def resume(self, job_id: str) -> None:
        self._control(job_id, "resume")

    def retry(self, job_id: str) -> None:
        """Queue the job's failed images again."""
        self._control(job_id, "retry")

    def _control(self, job_id: str, action: str) -> None:
        try:
            validate_control_kwargs({"job_id": job_id, "action": action})
        except MessageError as exc:
            raise InvalidSubmission(str(exc)) from None
        self._send(TASK_CONTROL_JOB, {"job_id": job_id, "action": action}, QUEUE_INTERACTIVE)

    def _send(self, task: str, kwargs: dict[str, Any], queue: str) -> None:
        from kombu import Exchange, Producer, Queue
        from kombu.exceptions import OperationalError

        task_id = str(uuid.uuid4())
        headers = {
            "lang": "py",
            "task": task,
            "id": task_id,
            "root_id": task_id,
            "parent_id": None,
            "group": None,
            "retries": 0,
            "eta": None,
            "expires": None,
            "argsrepr": "()",
            "kwargsrepr": repr(kwargs)[:1000],
            "origin": "tagger-client",
        }
        body = [[], kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
        try:
            with self._connection.channel() as channel:
                Producer(channel).publish(
                    body,
                    exchange=Exchange(""),
                    routing_key=queue,
                    serializer="json",
                    headers=headers,
                    correlation_id=task_id,
                    delivery_mode=2,
                    declare=[Queue(queue)],
                    retry=True,
                    retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
                )
        except (
            OperationalError,
            OSError,
            *self._connection.connection_errors,
            *self._connection.channel_errors,
        ) as exc:
            raise BrokerUnavailable(f"cannot publish {task} to {self._connection.as_uri()}: {exc}") from None

    # --- reads: straight from the database --------------------------------------------------------

    def status(self, job_id: str) -> JobStatus:
        """The job's state and counts; JobNotFound until a worker has taken the submission."""
        from sqlalchemy import select

        j = tables.jobs
        with self._reading() as conn:
            row = conn.execute(select(j).where(j.c.id == job_id)).mappings().first()
        if row is None:
            raise JobNotFound(f"no job {job_id!r} yet (a worker creates it when it takes the submission)")
        return JobStatus(
            id=row["id"],
            state=JobState(row["state"]),
            source=row["source"],
            total=row["total"],
            done=row["done"],
            failed=row["failed"],
            skipped=row["skipped"],
            listing_complete=bool(row["listing_complete"]),
            error=row["error"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            passed_over=dict(row["passed_over"] or {}),
            progress_at=row["progress_at"],
            waiting_reason=row["waiting_reason"],
            waiting_since=row["waiting_since"],
            unchanged=row["unchanged"],
        )

    def wait(
        self, job_id: str, *, timeout: float | None = None, poll: float = 0.5, progress: bool = False
    ) -> JobStatus:
        """Block until the job ends; `progress=True` draws a tqdm bar (if tqdm is installed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=0, unit="img", desc=f"job {job_id[:8]}")
        try:
            while True:
                try:
                    current: JobStatus | None = self.status(job_id)
                except JobNotFound:
                    current = None
                if current is not None:
                    if bar is not None:
                        bar.total, bar.n = current.total, current.done + current.failed + current.skipped
                        bar.refresh()
                    if current.finished:
                        return current
                if deadline is not None and time.monotonic() > deadline:
                    state = current.state.value if current else "not created yet"
                    raise WaitTimeout(f"job {job_id} still {state} after {timeout}s")
                time.sleep(poll)
        finally:
            if bar is not None:
                bar.close()

    def results(self, key: str, *, storage_url: str | None = None, all_versions: bool = False) -> list[Suggestion]:
        """Suggested tags of one image, best first, from the version that last tagged it (or every version).

        An image is a key under a storage root: pass `storage_url` (as submitted) when the same key may
        live in several storages. Raises ImageNotFound when no such image was ever submitted,
        InvalidSubmission when a bare key matches several, DatabaseUnavailable when the database
        cannot be read.
        """
        from sqlalchemy import select

        t, s, m = tables.tags, tables.suggestions, tables.model_versions
        with self._reading() as conn:
            image_id, version_id = self._image(conn, key, storage_url)
            query = (
                select(t.c.name, s.c.probability, m.c.version)
                .select_from(s.join(t, t.c.id == s.c.tag_id).join(m, m.c.id == s.c.model_version_id))
                .where(s.c.image_id == image_id)
                .order_by(m.c.id.desc(), s.c.probability.desc())
            )
            if not all_versions:
                query = query.where(s.c.model_version_id == version_id)
            return [Suggestion(name, float(p), v) for name, p, v in conn.execute(query)]

    def images_with_tag(
        self, tag: str, *, min_probability: float = 0.5, limit: int = 100, cursor: str | None = None
    ) -> TagPage:
        """A page of the images the active version suggested `tag` for at `min_probability` or more, most
        probable first (ties by image id). Pass the page's `next_cursor` for the next one (None: this was
        the last); any page, at any depth, is one index range. Raises TagNotFound, InvalidCursor,
        DatabaseUnavailable.
        """
        from tagger_client.paging import tag_page, version_id_of

        if not 1 <= limit <= 10_000:
            raise InvalidSubmission(f"limit must be from 1 to 10000, got {limit}")
        with self._reading() as conn:
            version = version_id_of(conn, None)
            return tag_page(conn, tag, version=version, limit=limit, min_probability=min_probability, cursor=cursor)

    def similar(
        self,
        key: str | None = None,
        *,
        storage_url: str | None = None,
        upload: bytes | None = None,
        limit: int = SIMILAR_LIMIT,
        min_similarity: float = 0.0,
    ) -> SimilarImages:
        """The images most like the one under `key` (itself first), or like `upload`, a picture's bytes that
        are not in the archive (nothing is stored), in the active model's space, through `tagger serve`.

        Raises ImageNotFound (no such image, or no embedding of it from the active model yet),
        InvalidSubmission (an upload that is not an image, a bad limit), ApiUnavailable (no api_url, or the
        server cannot be reached), ClientError for any other refusal (a token without the `read` role).
        """
        if (key is None) == (upload is None):
            raise InvalidSubmission("give a key or an upload (not both)")
        query = urllib.parse.urlencode({"limit": limit, "min_similarity": min_similarity})
        if key is not None:
            with self._reading() as conn:
                image_id, _ = self._image(conn, key, storage_url)
            answer = self._call("GET", f"/api/v1/images/{image_id}/similar?{query}")
        else:
            answer = self._call("POST", f"/api/v1/images/similar?{query}", upload)
        return SimilarImages(
            model_version=answer["model_version"],
            awaiting_vectors=int(answer["awaiting_vectors"]),
            images=[SimilarImage(**image) for image in answer["images"]],
        )

    def _call(self, method: str, path: str, body: bytes | None = None) -> Any:
        """One request to `tagger serve`; its JSON answer, or the client's error for its refusal."""
        if self._api is None:
            raise ApiUnavailable("similar() asks tagger serve: pass api_url= and api_token= to TaggerClient")
        base, token = self._api
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
        request = urllib.request.Request(base + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._api_timeout) as response:  # noqa: S310 - the caller's URL
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("detail", exc.reason)
            except ValueError:
                detail = exc.reason
            refusal = {404: ImageNotFound, 413: InvalidSubmission, 422: InvalidSubmission}.get(exc.code, ClientError)
            raise refusal(f"{method} {path.split('?')[0]}: {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiUnavailable(f"cannot reach tagger serve at {base}: {exc}") from None

    @staticmethod
    def _image(conn: Any, key: str, storage_url: str | None) -> tuple[int, int | None]:
        """(id, the version that last tagged it) of the one image under `key`: ImageNotFound when none,
        InvalidSubmission when a bare key names images in several storages."""
        from sqlalchemy import select

        i, st = tables.images, tables.storages
        images = select(i.c.id, i.c.model_version_id, st.c.url).join(st, st.c.id == i.c.storage_id)
        images = images.where(i.c.key == key)
        if storage_url is not None:
            images = images.where(st.c.url == storage_url.rstrip("/"))
        found = conn.execute(images).all()
        if not found:
            where = f" under {storage_url}" if storage_url else ""
            raise ImageNotFound(f"no image {key!r}{where} was ever submitted for tagging")
        if len(found) > 1:
            raise InvalidSubmission(
                f"{key!r} names images in several storages ({', '.join(sorted(r.url for r in found))}); "
                "pass storage_url"
            )
        return int(found[0][0]), found[0][1]

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        """A read-only connection; a database that cannot be reached is DatabaseUnavailable, with one line."""
        from sqlalchemy.exc import DBAPIError

        try:
            with self._engine.connect() as conn:
                yield conn
        except DBAPIError as exc:
            raise DatabaseUnavailable(str(exc.orig or exc).splitlines()[0]) from None


__all__ = ["JobStatus", "SimilarImage", "SimilarImages", "Suggestion", "TagPage", "TaggerClient"]
