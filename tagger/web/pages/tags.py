"""The tags, the images suggested for a tag (best first, or least sure first), one image with its
suggestions, a person's decision on each, and the thumbnails those pages show."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse

from tagger.errors import NotFoundError
from tagger.model.familiarity import UNFAMILIAR
from tagger.tokens import Principal
from tagger.web.pages.shared import MAX_ID, PAGE, decision_of, local, render
from tagger.web.session import check_csrf, require_user
from tagger_client.paging import MAX_CURSOR_CHARS

router = APIRouter(include_in_schema=False)


def _filters(order: str, min_probability: float, groups: int = 0) -> dict[str, object]:
    """A tag page's order, probability filter and folding of near-duplicates, where they are not the defaults."""
    pairs = (("order", order), ("min_probability", min_probability), ("groups", groups))
    return {k: v for k, v in pairs if v not in ("best", 0.0, 0)}


@router.get("/review", response_class=HTMLResponse)
def tags_page(request: Request, principal: Principal = Depends(require_user("read"))) -> HTMLResponse:  # noqa: B008
    from sqlalchemy import select

    from tagger.db.schema import Tag

    with request.app.state.sessions() as session:
        tags = list(session.scalars(select(Tag.name).order_by(Tag.name)))
    return render(request, "tags.html", principal, tags=tags)


@router.get("/review/tags/{tag:path}", response_class=HTMLResponse)
def tag_page(
    tag: str,
    request: Request,
    min_probability: float = Query(0.0, ge=0.0, le=1.0),  # noqa: B008
    after: str | None = Query(None, max_length=MAX_CURSOR_CHARS),  # noqa: B008
    before: str | None = Query(None, max_length=MAX_CURSOR_CHARS),  # noqa: B008
    cursor: int = Query(0, ge=0, le=PAGE),  # noqa: B008
    order: str = Query("best", pattern="^(best|least_sure)$"),  # noqa: B008
    groups: int = Query(0, ge=0, le=1),  # noqa: B008
    accepted: int | None = None,
    principal: Principal = Depends(require_user("read")),  # noqa: B008
) -> HTMLResponse:
    """A page of the tag's images (`cursor` is the selected one); `after` and `before` are keyset positions,
    so the next and the previous page are each one index range, however deep. With `groups=1`, one still per
    group of near-duplicates, with the group's size; its decision can cover the whole group."""
    from tagger.labels import decisions
    from tagger.results import images_with_tag

    if after and before:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "give after or before, not both")
    sessions = request.app.state.sessions
    least_sure = order == "least_sure"
    # One more than shown: whether there is a page beyond. A page before a position is the page after it in
    # the reverse order, read and turned round.
    found = images_with_tag(
        sessions,
        tag,
        min_probability=min_probability,
        limit=PAGE + 1,
        cursor=before or after,
        least_sure=least_sure != bool(before),
    )
    beyond, shown = len(found.items) > PAGE, found.items[:PAGE]
    if before:
        shown.reverse()
    earlier, later = (beyond, True) if before else (after is not None, beyond)
    decided = decisions(sessions, [i.image_id for i in shown])
    items = [item.as_dict() | {"decision": decision_of(decided, item.image_id, tag)} for item in shown]
    if groups:
        items = _one_per_group(request, items)
    base = f"/review/tags/{quote(tag, safe='/')}"
    filters = _filters(order, min_probability, groups)
    here = {"after": after} if after else {"before": before} if before else {}

    def link(**position: str) -> str:
        return f"{base}?{urlencode(filters | position)}"

    return render(
        request,
        "tag.html",
        principal,
        tag=tag,
        items=items,
        grouped=bool(groups),
        folded=link(groups="1") if not groups else None,
        cursor=cursor,
        accepted=accepted,
        may_review=principal.may("review"),
        back=base,
        model_version=found.model_version,
        # where a decision returns: this page, its order and filter (the selected image is added to it)
        here=link(**here) if filters or here else base,
        previous=link(before=shown[0].cursor) if earlier and shown else None,
        next=link(after=shown[-1].cursor) if later and shown else None,
    )


@router.get("/review/unfamiliar", response_class=HTMLResponse)
def unfamiliar_page(
    request: Request,
    below: float | None = Query(None, ge=0.0, le=100.0),  # noqa: B008
    after: int | None = Query(None, ge=0, le=MAX_ID),  # noqa: B008
    principal: Principal = Depends(require_user("read")),  # noqa: B008
) -> HTMLResponse:
    """The review queue "unfamiliar first": the images least like the active version's held-out stills, where
    its tags deserve a person's look first. `below` and `after` are the keyset position of the next page."""
    from tagger.results import unfamiliar_images

    if (below is None) != (after is None):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "give below and after together")
    position = (below, after) if below is not None and after is not None else None
    version, found = unfamiliar_images(request.app.state.sessions, limit=PAGE + 1, after=position)
    shown, last = found[:PAGE], found[PAGE - 1] if len(found) > PAGE else None
    return render(
        request,
        "unfamiliar.html",
        principal,
        model_version=version,
        items=shown,
        next=f"/review/unfamiliar?{urlencode({'below': last.unfamiliarity, 'after': last.id})}" if last else None,
    )


@router.get("/review/images/{image_id}", response_class=HTMLResponse)
def image_page(
    request: Request,
    image_id: int = PathParam(..., ge=1, le=MAX_ID),  # noqa: B008
    principal: Principal = Depends(require_user("read")),  # noqa: B008
) -> HTMLResponse:
    from tagger.labels import decisions
    from tagger.results import image_by_id, suggestions_for

    sessions = request.app.state.sessions
    image = image_by_id(sessions, image_id)
    decided = decisions(sessions, [image_id])
    rows = suggestions_for(sessions, image)
    for row in rows:
        row["decision"] = decision_of(decided, image_id, row["tag"])
    similar, near = _similar(request, image_id)
    return render(
        request,
        "image.html",
        principal,
        image=image,
        suggestions=rows,
        may_review=principal.may("review"),
        similar=similar,
        near=near,
        threshold=request.app.state.settings.duplicate_threshold,
    )


SIMILAR_STRIP = 12  # stills in an image page's "similar stills" strip


def _one_per_group(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A page's items with each still's near-duplicates folded into it: the first of a group on the page
    stands for it, with `near` (its near-duplicates in the archive, the ones a group decision covers too);
    the others of the group on the page are left out."""
    folded: set[int] = set()
    kept = []
    for item in items:
        if item["image_id"] in folded:
            continue
        near = near_duplicates(request, item["image_id"])
        folded.update(near)
        kept.append(item | {"near": len(near)})
    return kept


def _similar(request: Request, image_id: int) -> tuple[list[Any] | None, list[Any]]:
    """The strip of stills most like this one (None when the active model has not embedded it), and its
    near-duplicates: those at or above TAGGER_DUPLICATE_THRESHOLD, which a group decision covers too."""
    from tagger.similar import similar_to_image

    try:
        found = similar_to_image(request.app.state.sessions, image_id, limit=SIMILAR_STRIP + 1)
    except NotFoundError:
        return None, []
    hits = [h for h in found.hits if h.image_id != image_id]
    return hits, [h for h in hits if h.similarity >= request.app.state.settings.duplicate_threshold]


def near_duplicates(request: Request, image_id: int) -> list[int]:
    """All of an image's near-duplicates, found again when a group decision is made (not only the strip's)."""
    from tagger.similar import similar_to_image
    from tagger_client.contract import SIMILAR_MAX_LIMIT

    threshold = request.app.state.settings.duplicate_threshold
    try:
        found = similar_to_image(
            request.app.state.sessions, image_id, limit=SIMILAR_MAX_LIMIT, min_similarity=threshold
        )
    except NotFoundError:
        return []
    return [h.image_id for h in found.hits if h.image_id != image_id]


@router.post("/review/decide")
def decide(
    request: Request,
    image_id: int = Form(..., ge=1, le=MAX_ID),  # noqa: B008
    tag: str = Form(...),  # noqa: B008
    decision: str = Form(...),  # noqa: B008
    cursor: int = Form(0, ge=0, le=1000),  # noqa: B008
    stay: bool = Form(False),  # noqa: B008 - the page decides several tags per image: stay on it
    group: bool = Form(False),  # noqa: B008 - the image's near-duplicates too
    back: str = Form("/review"),  # noqa: B008
    csrf: str = Form(""),  # noqa: B008
    principal: Principal = Depends(require_user("review")),  # noqa: B008
) -> RedirectResponse:
    from tagger.labels import decide_known

    check_csrf(request, csrf)
    if decision not in ("accept", "reject"):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "decision is accept or reject")
    # 404 (the app's NotFoundError page) for a tag not in the vocabulary or an image not known.
    also = near_duplicates(request, image_id) if group else []
    decide_known(request.app.state.sessions, image_id, tag, positive=decision == "accept", by=principal.name, also=also)
    selected = cursor if stay else cursor + 1
    back = local(back)
    return RedirectResponse(
        f"{back}{'&' if '?' in back else '?'}cursor={selected}#item-{selected}", status.HTTP_303_SEE_OTHER
    )


@router.post("/review/tags/{tag:path}/accept-above")
def accept_above(
    tag: str,
    request: Request,
    min_probability: float = Form(..., ge=0.0, le=1.0),  # noqa: B008
    max_unfamiliarity: float = Form(UNFAMILIAR, ge=0.0, le=100.0),  # noqa: B008
    include_unfamiliar: bool = Form(False),  # noqa: B008
    csrf: str = Form(""),  # noqa: B008
    principal: Principal = Depends(require_user("review")),  # noqa: B008
) -> RedirectResponse:
    from tagger.labels import accept_above as accept
    from tagger.web.api import tag_names

    check_csrf(request, csrf)
    tag = tag_names([tag])[0]  # 422 for a name that is no tag name
    limit = None if include_unfamiliar else max_unfamiliarity
    count = accept(request.app.state.sessions, tag, min_probability, by=principal.name, max_unfamiliarity=limit)
    return RedirectResponse(f"/review/tags/{quote(tag, safe='/')}?accepted={count}", status.HTTP_303_SEE_OTHER)


@router.get("/thumbs/{image_id}")
def thumb(
    request: Request,
    image_id: int = PathParam(..., ge=1, le=MAX_ID),  # noqa: B008
    _: Principal = Depends(require_user("read")),  # noqa: B008
) -> Response:
    from tagger.errors import PermanentError, RetryableError
    from tagger.results import image_by_id
    from tagger.web.thumbs import thumbnail

    settings = request.app.state.settings
    try:
        image = image_by_id(request.app.state.sessions, image_id)
        data = thumbnail(image.storage_url, image.key, settings.max_image_bytes, settings.max_image_pixels)
    except PermanentError as exc:
        if isinstance(exc, NotFoundError):  # a file gone from the storage: the app's 404
            raise
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"no thumbnail: {exc}") from None
    except RetryableError:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the storage cannot be reached") from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
