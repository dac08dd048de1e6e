"""The tags, the images suggested for a tag (best first, or least sure first), one image with its
suggestions, a person's decision on each, and the thumbnails those pages show."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse

from tagger.errors import NotFoundError
from tagger.tokens import Principal
from tagger.web.pages.shared import MAX_ID, PAGE, decision_of, local, render
from tagger.web.session import check_csrf, require_user

router = APIRouter(include_in_schema=False)


def _filters(order: str, min_probability: float) -> dict[str, object]:
    """A tag page's order and probability filter, where they are not the defaults."""
    return {k: v for k, v in (("order", order), ("min_probability", min_probability)) if v not in ("best", 0.0)}


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
    page: int = Query(0, ge=0, le=100_000),  # noqa: B008
    cursor: int = Query(0, ge=0, le=PAGE),  # noqa: B008
    order: str = Query("best", pattern="^(best|least_sure)$"),  # noqa: B008
    accepted: int | None = None,
    principal: Principal = Depends(require_user("read")),  # noqa: B008
) -> HTMLResponse:
    from tagger.labels import decisions
    from tagger.results import images_with_tag

    sessions = request.app.state.sessions
    items = images_with_tag(
        sessions,
        tag,
        min_probability=min_probability,
        limit=PAGE + 1,  # one more than shown: whether there is a next page
        offset=page * PAGE,
        least_sure=order == "least_sure",
    )
    more, items = len(items) > PAGE, items[:PAGE]
    decided = decisions(sessions, [i["image_id"] for i in items])
    for item in items:
        item["decision"] = decision_of(decided, item["image_id"], tag)
    return render(
        request,
        "tag.html",
        principal,
        tag=tag,
        items=items,
        cursor=cursor,
        accepted=accepted,
        may_review=principal.may("review"),
        back=f"/review/tags/{quote(tag, safe='/')}",
        # where a decision returns: this order and filter (page and cursor are added to it)
        here=f"/review/tags/{quote(tag, safe='/')}"
        + (f"?{urlencode(filters)}" if (filters := _filters(order, min_probability)) else ""),
        page=page,
        more=more,
        min_probability=min_probability,
        order=order,
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
    return render(request, "image.html", principal, image=image, suggestions=rows, may_review=principal.may("review"))


@router.post("/review/decide")
def decide(
    request: Request,
    image_id: int = Form(..., ge=1, le=MAX_ID),  # noqa: B008
    tag: str = Form(...),  # noqa: B008
    decision: str = Form(...),  # noqa: B008
    cursor: int = Form(0, ge=0, le=1000),  # noqa: B008
    page: int = Form(0, ge=0, le=100_000),  # noqa: B008
    stay: bool = Form(False),  # noqa: B008 - the page decides several tags per image: stay on it
    back: str = Form("/review"),  # noqa: B008
    csrf: str = Form(""),  # noqa: B008
    principal: Principal = Depends(require_user("review")),  # noqa: B008
) -> RedirectResponse:
    from tagger.labels import decide_known

    check_csrf(request, csrf)
    if decision not in ("accept", "reject"):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "decision is accept or reject")
    # 404 (the app's NotFoundError page) for a tag not in the vocabulary or an image not known.
    decide_known(request.app.state.sessions, image_id, tag, positive=decision == "accept", by=principal.name)
    after = cursor if stay else cursor + 1
    at = f"page={page}&cursor={after}" if page else f"cursor={after}"
    back = local(back)
    return RedirectResponse(f"{back}{'&' if '?' in back else '?'}{at}#item-{after}", status.HTTP_303_SEE_OTHER)


@router.post("/review/tags/{tag:path}/accept-above")
def accept_above(
    tag: str,
    request: Request,
    min_probability: float = Form(..., ge=0.0, le=1.0),  # noqa: B008
    csrf: str = Form(""),  # noqa: B008
    principal: Principal = Depends(require_user("review")),  # noqa: B008
) -> RedirectResponse:
    from tagger.labels import accept_above as accept
    from tagger.web.api import tag_names

    check_csrf(request, csrf)
    tag = tag_names([tag])[0]  # 422 for a name that is no tag name
    count = accept(request.app.state.sessions, tag, min_probability, by=principal.name)
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
