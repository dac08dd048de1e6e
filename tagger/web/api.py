"""/api/v1: submit and steer jobs, read suggestions, find images by tag or by likeness, record people's decisions.

Jobs go to the workers as the documented Celery messages, through the Python client (`tagger_client`),
so the job logic lives in one place; reads come from the database.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from tagger.tokens import Principal
from tagger.web.auth import require
from tagger.web.pages.shared import MAX_ID
from tagger_client.contract import SIMILAR_LIMIT, SIMILAR_MAX_LIMIT
from tagger_client.errors import InvalidSubmission
from tagger_client.paging import MAX_CURSOR_CHARS

router = APIRouter(prefix="/api/v1")
# The deprecated `offset` reads and drops that many index entries: bounded, so a request costs what a
# page may. Deeper pages follow a cursor; the whole list is `tagger export --tag`.
MAX_OFFSET = 10_000


class Submission(BaseModel):
    """A job over exactly one of keys, prefix or query (the same fields as `TaggerClient.submit`). A prefix is
    incremental (what is new, changed, stale or failed) unless `incremental` is false; keys are tagged as
    named."""

    model_config = ConfigDict(extra="forbid")
    keys: list[str] | None = None
    prefix: str | None = None
    query: str | None = None
    tags: list[str] | None = None
    storage_url: str | None = None
    priority: Literal["bulk", "interactive"] = "bulk"
    idempotency_key: str | None = Field(default=None, max_length=200)
    webhook: str | None = None
    time_limit: float | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, ge=1, le=1024)
    incremental: bool | None = None
    content_hash: bool | None = None


class Submitted(BaseModel):
    job_id: str


class Decisions(BaseModel):
    """A person's decisions on one image's tags: accepted ones are positives, rejected ones negatives."""

    model_config = ConfigDict(extra="forbid")
    key: str
    storage_url: str | None = None
    accepted: list[str] = Field(default_factory=list)
    rejected: list[str] = Field(default_factory=list)


def _client(request: Request) -> Any:
    return request.app.state.client


def _check_storage(request: Request, storage_url: str | None, principal: Principal) -> None:
    """Over HTTP a job reads from the deployment's storage (TAGGER_STORAGE_URL, or a prefix under it):
    naming another root would let a token holder make the workers read, and the review pages show, any
    folder or bucket they can reach. Only an admin token names other roots."""
    from tagger.storage import canonical_url

    if storage_url is None or principal.may("admin"):
        return
    default = request.app.state.settings.storage_url
    wanted = canonical_url(storage_url)
    root = canonical_url(default) if default else None
    if root is None or not (wanted == root or wanted.startswith(root.rstrip("/") + "/")):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"storage_url must be the deployment's storage ({root or 'TAGGER_STORAGE_URL is not set'}) or under it; "
            "other roots need an admin token",
        )


def _check_webhook(request: Request, webhook: str | None, principal: Principal) -> None:
    """Over HTTP a webhook goes only to a host in TAGGER_WEBHOOK_HOSTS: otherwise a token holder could make
    the workers call internal addresses (SSRF). Only an admin token names others."""
    from urllib.parse import urlparse

    if webhook is None or principal.may("admin"):
        return
    allowed = {h.strip().lower() for h in request.app.state.settings.webhook_hosts.split(",") if h.strip()}
    host = (urlparse(webhook).hostname or "").lower()
    if host not in allowed:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"webhook host {host!r} is not in TAGGER_WEBHOOK_HOSTS ({', '.join(sorted(allowed)) or 'empty'}); "
            "other hosts need an admin token",
        )


def _check_source(body: Submission) -> None:
    """Keys and a prefix follow the storage's key rules here, so a bad one is a 422 now, not a failure
    the job reports after a worker took it."""
    from tagger.errors import PermanentError
    from tagger.storage import validate_key

    if body.keys is not None and not body.keys:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "keys is empty: give at least one key")
    try:
        for key in body.keys or ():
            validate_key(key)
        if body.prefix and body.prefix.strip("/"):
            validate_key(body.prefix.rstrip("/"))
    except PermanentError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


def tag_names(names: list[str]) -> list[str]:
    """Tag names as stored (lower case, one word); 422 for a name that is not one."""
    from tagger.errors import ConfigError
    from tagger.labels import normalise_tag

    try:
        return [normalise_tag(n) for n in names]
    except ConfigError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED, response_model=Submitted)
def submit_job(body: Submission, request: Request, principal: Principal = Depends(require("submit"))) -> Submitted:  # noqa: B008
    """Queue a job; its id at once (the same idempotency key gives the same id). 422 for a bad submission."""
    _check_storage(request, body.storage_url, principal)
    _check_webhook(request, body.webhook, principal)
    _check_source(body)
    return Submitted(job_id=_client(request).submit(**body.model_dump()))


@router.get("/jobs/{job_id}")
def job_status(job_id: str, request: Request, _: Principal = Depends(require("read"))) -> dict[str, object]:  # noqa: B008
    """The job's state, counts, rate and ETA, and while it waits, why; 404 until a worker has taken the
    submission."""
    from tagger.jobs.progress import with_broker_note

    return dict(with_broker_note(_client(request).status(job_id), request.app.state.settings.broker_url).as_dict())


@router.post("/jobs/{job_id}/{action}", status_code=status.HTTP_202_ACCEPTED)
def control_job(
    job_id: str,
    action: Literal["cancel", "pause", "resume", "retry"],
    request: Request,
    _: Principal = Depends(require("submit")),  # noqa: B008
) -> dict[str, str]:
    """Cancel, pause, resume or retry the failed images of a job (a message to the workers)."""
    getattr(_client(request), action)(job_id)
    return {"job_id": job_id, "action": action}


@router.get("/images/suggestions")
def image_suggestions(
    request: Request,
    key: str,
    storage_url: str | None = None,
    all_versions: bool = False,
    _: Principal = Depends(require("read")),  # noqa: B008
) -> list[dict[str, object]]:
    """Suggested tags of one image, best first, from the version that last tagged it (or every version)."""
    try:
        found = _client(request).results(key, storage_url=storage_url, all_versions=all_versions)
    except InvalidSubmission as exc:  # a bare key in several storages
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return [{"tag": s.tag, "probability": s.probability, "model_version": s.model_version} for s in found]


@router.get("/images/familiarity")
def image_familiarity(
    request: Request,
    key: str,
    storage_url: str | None = None,
    _: Principal = Depends(require("read")),  # noqa: B008
) -> dict[str, object]:
    """How unfamiliar an image looked to the version that last tagged it: `unfamiliarity`, the percentage
    of that version's held-out stills more familiar than it (0..100; null if unknown), and in words."""
    from tagger.results import find_images
    from tagger.storage import storage_url_for

    root = storage_url_for(storage_url) if storage_url else None
    found = find_images(request.app.state.sessions, key, storage_url=root)
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no image {key!r} is known")
    if len(found) > 1:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{key!r} is in {len(found)} storages: name one with storage_url")
    image = found[0]
    return {
        "storage": image.storage_url,
        "key": image.key,
        "model_version": image.version,
        "unfamiliarity": image.unfamiliarity,
        "familiarity": image.familiarity,
    }


@router.get("/tags/{tag:path}/images")
def tag_images(
    tag: str,
    request: Request,
    min_probability: float = Query(0.5, ge=0.0, le=1.0),  # noqa: B008
    limit: int = Query(100, ge=1, le=1000),  # noqa: B008
    cursor: str | None = Query(  # noqa: B008
        None,
        max_length=MAX_CURSOR_CHARS,
        description="Continue after this row: the `cursor` of the last row of the previous page.",
    ),
    offset: int = Query(  # noqa: B008
        0,
        ge=0,
        le=MAX_OFFSET,
        deprecated=True,
        description=f"Deprecated: page with `cursor`. Skips rows; at most {MAX_OFFSET:,}, never with a cursor.",
    ),
    _: Principal = Depends(require("read")),  # noqa: B008
) -> list[dict[str, Any]]:
    """Images the active model version suggested `tag` for at `min_probability` or more, most probable
    first, ties by image id. Each row carries a `cursor`: pass the last row's as `cursor` for the next
    page (a page shorter than `limit` is the last). Any page, at any depth, costs what it returns."""
    from tagger.results import images_with_tag

    if cursor is not None and offset:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "give a cursor or an offset, not both")
    page = images_with_tag(
        request.app.state.sessions, tag, min_probability=min_probability, limit=limit, cursor=cursor, offset=offset
    )
    return [item.as_dict() for item in page.items]


@router.get("/images/{image_id}/similar")
def similar_images(
    request: Request,
    image_id: int = PathParam(..., ge=1, le=MAX_ID),  # noqa: B008
    limit: int = Query(SIMILAR_LIMIT, ge=1, le=SIMILAR_MAX_LIMIT),  # noqa: B008
    min_similarity: float = Query(0.0, ge=-1.0, le=1.0),  # noqa: B008
    _: Principal = Depends(require("read")),  # noqa: B008
) -> dict[str, Any]:
    """The images most like one (itself first, similarity 1), most similar first, in the active model's
    space, with how many tagged images that model has not embedded yet (`awaiting_vectors`: they cannot be
    found). 404 when the image is unknown or the active model has no embedding of it yet."""
    from tagger.similar import similar_to_image

    sessions = request.app.state.sessions
    return similar_to_image(sessions, image_id, limit=limit, min_similarity=min_similarity).as_dict()


@router.get("/duplicates")
def duplicate_groups(
    request: Request,
    threshold: float | None = Query(  # noqa: B008
        None,
        gt=0.0,
        le=1.0,
        description="Similarity at or above which two stills are near-duplicates; default TAGGER_DUPLICATE_THRESHOLD.",
    ),
    min_size: int = Query(2, ge=2, le=MAX_ID),  # noqa: B008
    limit: int = Query(100, ge=1, le=1000),  # noqa: B008
    cursor: str | None = Query(  # noqa: B008
        None,
        pattern=r"^[0-9]{1,18}$",
        description="Continue after this page: the previous page's `next_cursor`.",
    ),
    _: Principal = Depends(require("read")),  # noqa: B008
) -> dict[str, Any]:
    """Groups of near-identical stills in the active model's space (each still linked to the others of its
    group by pairs at least `threshold` similar), ordered by their smallest image id, `limit` a page;
    `next_cursor` is null on the last page. `awaiting_vectors`: tagged images the active model has not
    embedded yet, which are not compared."""
    from tagger.duplicates import find_duplicates

    settings = request.app.state.settings
    return find_duplicates(
        request.app.state.sessions,
        threshold=threshold if threshold is not None else settings.duplicate_threshold,
        min_size=min_size,
        limit=limit,
        cursor=int(cursor or 0),
    ).as_dict()


# The upload is the body itself (any content type): no multipart to parse, and `curl --data-binary @x.jpg`.
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The picture's bytes (JPEG, PNG, WebP, ...), at most TAGGER_API_MAX_BODY_BYTES.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post("/images/similar", openapi_extra=_UPLOAD_BODY)
async def similar_to_upload(
    request: Request,
    limit: int = Query(SIMILAR_LIMIT, ge=1, le=SIMILAR_MAX_LIMIT),  # noqa: B008
    min_similarity: float = Query(0.0, ge=-1.0, le=1.0),  # noqa: B008
    _: Principal = Depends(require("read")),  # noqa: B008
) -> dict[str, Any]:
    """The archive's images most like a picture that is not in it (an upload to check before storing it):
    embedded here by the active model, and nothing is written, no image and no vector. 422 when the body
    is not an image tagger reads; 413 over TAGGER_API_MAX_BODY_BYTES."""
    from starlette.concurrency import run_in_threadpool

    from tagger.errors import ImageError
    from tagger.similar import similar_to_vector

    data = await request.body()
    if not data:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the body is empty: send the picture's bytes")
    try:
        version_id, vector = await run_in_threadpool(_embedder(request).embed, data)
    except ImageError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"the body is not an image tagger reads: {exc}"
        ) from None
    found = await run_in_threadpool(
        similar_to_vector,
        request.app.state.sessions,
        vector,
        version_id=version_id,
        limit=limit,
        min_similarity=min_similarity,
    )
    return found.as_dict()


def _embedder(request: Request) -> Any:
    """The server's one Embedder, made on the first upload: torch and the model load then, not at start."""
    state = request.app.state
    if getattr(state, "embedder", None) is None:
        from tagger.model.decode import DecodeLimits
        from tagger.uploads import Embedder

        settings = state.settings
        limits = DecodeLimits(max_pixels=settings.max_image_pixels, draft=bool(settings.jpeg_draft))
        state.embedder = Embedder(state.sessions, device=settings.device, limits=limits)
    return state.embedder


@router.post("/labels")
def record_labels(
    body: Decisions,
    request: Request,
    principal: Principal = Depends(require("review")),  # noqa: B008
) -> dict[str, object]:
    """Record decisions on one image (the latest per tag wins), as the token's name; training learns from
    both accepted (positive) and rejected (negative) tags."""
    from tagger.labels import decide
    from tagger.results import find_images

    accepted, rejected = tag_names(body.accepted), tag_names(body.rejected)
    if not accepted and not rejected:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "nothing to record: give accepted or rejected tags")
    if set(accepted) & set(rejected):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "a tag cannot be both accepted and rejected")
    sessions = request.app.state.sessions
    images = find_images(sessions, body.key, storage_url=body.storage_url)
    if len(images) > 1:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{body.key!r} is in several storages; pass storage_url")
    image = images[0]
    count = decide(sessions, image.id, accepted=accepted, rejected=rejected, source="accepted", by=principal.name)
    return {"storage_url": image.storage_url, "key": image.key, "labels": count, "decided_by": principal.name}
