"""The review pages: tags, the images suggested for a tag (best first), one image; accept or reject each
suggestion with mouse or keyboard, or accept everything above a probability. Server-rendered (Jinja2,
escaped), a few lines of inline script for the keyboard, no build step.

Every decision is a label (who, when, accepted or rejected) that `tagger train --labels db` learns from.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from tagger.errors import NotFoundError
from tagger.tokens import Principal
from tagger.web.session import check_csrf, csrf_token, log_in, log_out, require_user, user

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
PAGE = 60
MAX_ID = 2**63 - 1  # image ids are BIGINT: a larger number names no image (404), not a database error


def _page(request: Request, name: str, principal: Principal | None, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"user": principal, "csrf": csrf_token(request), **context}, headers=_NO_STORE
    )


_NO_STORE = {"Cache-Control": "no-store"}


def is_page(request: Request) -> bool:
    """A review page (a browser's HTML, or a form it posts), which gets its errors as a page, not as JSON;
    the images those pages load (`/thumbs/ID`, the plots) keep the short JSON answer like the API."""
    path = request.url.path
    page = path in ("/login", "/logout", "/review") or path.startswith("/review/")
    return page and not path.endswith(".png")


def error_page(
    request: Request, status_code: int, detail: str, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    """An error on the review pages as a page: its status, the reason (escaped) and the way back."""
    return templates.TemplateResponse(
        request,
        "error.html",
        {"user": None, "csrf": "", "status_code": status_code, "detail": detail},
        status_code=status_code,
        headers={**_NO_STORE, **(headers or {})},
    )


def _decision(decided: dict[tuple[int, str], bool], image_id: int, tag: str) -> str:
    """How a page shows a person's decision on (image, tag): accepted, rejected or not yet ("")."""
    state = decided.get((image_id, tag))
    return "" if state is None else ("accepted" if state else "rejected")


def _filters(order: str, min_probability: float) -> dict[str, object]:
    """A tag page's order and probability filter, where they are not the defaults."""
    return {k: v for k, v in (("order", order), ("min_probability", min_probability)) if v not in ("best", 0.0)}


def _local(path: str) -> str:
    """A redirect target that stays on this site's review pages (no open redirect), with its query."""
    page, _, query = path.partition("?")
    ok = re.fullmatch(r"/review(/[^?#\\]*)?", page) and "//" not in page and not re.search(r"[#\\\s]", query)
    return path if ok else "/review"


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/review", status.HTTP_303_SEE_OTHER)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/review") -> HTMLResponse:  # noqa: A002 - the form's name
    return _page(request, "login.html", user(request), next=_local(next), error=None)


@router.post("/login", response_model=None)
def login(
    request: Request,
    token: str = Form(""),  # noqa: B008
    csrf: str = Form(""),  # noqa: B008
    next: str = Form("/review"),  # noqa: A002, B008
) -> Response:
    check_csrf(request, csrf)
    principal = log_in(request, token)
    if principal is None:
        page = _page(request, "login.html", None, next=_local(next), error="That token is not valid (or revoked).")
        page.status_code = status.HTTP_401_UNAUTHORIZED
        return page
    return RedirectResponse(_local(next), status.HTTP_303_SEE_OTHER)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> RedirectResponse:  # noqa: B008
    check_csrf(request, csrf)
    log_out(request)
    return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)


@router.get("/review", response_class=HTMLResponse)
def tags_page(request: Request, principal: Principal = Depends(require_user("read"))) -> HTMLResponse:  # noqa: B008
    from sqlalchemy import select

    from tagger.db.schema import Tag

    with request.app.state.sessions() as session:
        tags = list(session.scalars(select(Tag.name).order_by(Tag.name)))
    return _page(request, "tags.html", principal, tags=tags)


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
        item["decision"] = _decision(decided, item["image_id"], tag)
    return _page(
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
        row["decision"] = _decision(decided, image_id, row["tag"])
    return _page(request, "image.html", principal, image=image, suggestions=rows, may_review=principal.may("review"))


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
    back = _local(back)
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


@router.get("/review/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, principal: Principal = Depends(require_user("read"))) -> HTMLResponse:  # noqa: B008
    from tagger.jobs.progress import recent

    return _page(request, "jobs.html", principal, jobs=recent(request.app.state.sessions, 50))


@router.get("/review/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, request: Request, principal: Principal = Depends(require_user("read"))) -> HTMLResponse:  # noqa: B008
    from tagger.jobs.progress import failures, summary

    sessions = request.app.state.sessions
    job = summary(sessions, job_id)
    return _page(
        request,
        "job.html",
        principal,
        job=job,
        failed=failures(sessions, job_id, limit=200),
        may_steer=principal.may("submit"),
    )


@router.post("/review/jobs/{job_id}/{action}")
def steer_job(
    job_id: str,
    action: str,
    request: Request,
    csrf: str = Form(""),  # noqa: B008
    _: Principal = Depends(require_user("submit")),  # noqa: B008
) -> RedirectResponse:
    """Pause, resume, cancel or retry the failed images: the same message the API and the client send."""
    from tagger_client.contract import ACTIONS

    check_csrf(request, csrf)
    if action not in ACTIONS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job action")
    getattr(request.app.state.client, action)(job_id)  # a malformed id: the client refuses it (422)
    return RedirectResponse(f"/review/jobs/{job_id}?sent={action}", status.HTTP_303_SEE_OTHER)


@router.get("/review/models", response_class=HTMLResponse)
def models_page(request: Request, principal: Principal = Depends(require_user("read"))) -> HTMLResponse:  # noqa: B008
    from sqlalchemy import select

    from tagger.db.schema import ModelVersion

    with request.app.state.sessions() as session:  # not `meta`: it holds each version's training record
        versions = session.execute(
            select(
                ModelVersion.version,
                ModelVersion.arch,
                ModelVersion.status,
                ModelVersion.is_active,
                ModelVersion.created_at,
                ModelVersion.meta["metrics"]["map"].as_float().label("map"),
            ).order_by(ModelVersion.id.desc())
        ).all()
    return _page(request, "models.html", principal, versions=versions)


def _version(request: Request, version: str) -> Any:
    """The registry row of `version`, detached (NotFoundError, the app's 404, when there is none)."""
    from tagger import registry

    with request.app.state.sessions() as session:
        row = registry.get(session, version)
        session.expunge(row)
    return row


def _training(row: Any) -> dict[str, Any]:
    return dict((row.meta or {}).get("training") or {})


@router.get("/review/models/{version}", response_class=HTMLResponse)
def model_page(
    version: str,
    request: Request,
    done: str | None = None,
    principal: Principal = Depends(require_user("read")),  # noqa: B008
) -> HTMLResponse:
    from sqlalchemy import exists, select

    from tagger.db.schema import ModelVersion

    row = _version(request, version)
    metrics = dict((row.meta or {}).get("metrics") or {})
    per_tag = metrics.pop("per_tag", {}) or {}
    training = _training(row)
    records: dict[str, Any] = {}
    unreadable = []
    for plot in ("curves", "lr-find"):
        try:
            records[plot] = _plot_record(training, plot)
        except ValueError as exc:  # shown as such; the rest of the page stands
            records[plot] = None
            unreadable.append(f"the {plot} record cannot be read ({exc}); retrain to renew it")
    with request.app.state.sessions() as session:  # what `registry.rollback` would go back to
        earlier = session.scalar(
            select(
                exists().where(
                    ModelVersion.status == "retired",
                    ModelVersion.activated_at.is_not(None),
                    ModelVersion.id != row.id,
                )
            )
        )
    return _page(
        request,
        "model.html",
        principal,
        model=row,
        metrics={k: v for k, v in metrics.items() if isinstance(v, int | float)},
        per_tag=per_tag,
        history=records["curves"] or [],
        lr_find=records["lr-find"],
        unreadable=unreadable,
        losses=len(training.get("highest_losses") or []),
        may_switch=principal.may("admin"),
        can_roll_back=bool(earlier),
        done=done if done in ("activated", "rolled back") else None,
    )


@router.get("/review/models/{version}/losses", response_class=HTMLResponse)
def losses_page(
    version: str,
    request: Request,
    cursor: int = Query(0, ge=0, le=1000),  # noqa: B008
    principal: Principal = Depends(require_user("read")),  # noqa: B008
) -> HTMLResponse:
    """The held-out images this version got most wrong (training keeps them, worst first): mislabelled
    stills and blind spots, with accept/reject for the tags in dispute."""
    from tagger.labels import decisions

    row = _version(request, version)
    items = [dict(e) for e in _training(row).get("highest_losses") or [] if e.get("image_id") is not None]
    decided = decisions(request.app.state.sessions, [e["image_id"] for e in items])
    for item in items:
        item["worst"] = [dict(w) for w in item.get("worst") or []]
        for worst in item["worst"]:
            worst["decision"] = _decision(decided, item["image_id"], worst["tag"])
    return _page(
        request,
        "losses.html",
        principal,
        model=row,
        items=items,
        cursor=cursor,
        back=f"/review/models/{quote(version)}/losses",
        may_review=principal.may("review"),
    )


@router.get("/review/models/{version}/{plot}.png")
def model_plot(
    version: str,
    plot: str,
    request: Request,
    _: Principal = Depends(require_user("read")),  # noqa: B008
) -> Response:
    """The training curves or the lr-finder plot of a version, drawn from what the registry keeps."""
    import json

    try:
        record = _plot_record(_training(_version(request, version)), plot)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{version} has no {plot} plot")
        png = _plot(plot, json.dumps(record, sort_keys=True))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # edited by hand, or from an older release
        log.warning("%s: its %s record cannot be drawn: %s", version, plot, exc)
        raise HTTPException(
            status.HTTP_500_INTERNAL_SERVER_ERROR,
            f"the {plot} record of {version} cannot be drawn ({exc}); retrain to renew it",
        ) from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _plot_record(training: dict[str, Any], plot: str) -> Any:
    """What a plot is drawn from: the `history` rows, or the range test's parallel lists and suggestion.

    None when the version has none; ValueError when the record is there and cannot be drawn.
    """
    if plot == "curves":
        rows = training.get("history")
        if rows and (not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows)):
            raise ValueError("history must be a list of per-epoch records")
        return rows or None
    if plot == "lr-find":
        record = training.get("lr_find")
        if not record:
            return None
        if not isinstance(record, dict):
            raise ValueError("lr_find must be a record of lrs, losses and a suggestion")
        lrs, losses, suggestion = (record.get(k) for k in ("lrs", "losses", "suggestion"))
        if not (isinstance(lrs, list) and isinstance(losses, list) and len(lrs) == len(losses)) or not all(
            isinstance(v, int | float) for v in (*lrs, *losses, suggestion)
        ):
            raise ValueError("lrs and losses must be lists of numbers of one length, suggestion a number")
        return record
    return None


@lru_cache(maxsize=32)
def _plot(kind: str, data: str) -> bytes:
    """A version's record never changes, so each plot is drawn once per process (a few hundred ms)."""
    import json

    from tagger.training.plots import curves_png, lr_find_png

    record = json.loads(data)
    if kind == "curves":
        return curves_png(record)
    return lr_find_png(record["lrs"], record["losses"], record["suggestion"])


@router.post("/review/models/{version}/{action}")
def switch_model(
    version: str,
    action: str,
    request: Request,
    csrf: str = Form(""),  # noqa: B008
    _: Principal = Depends(require_user("admin")),  # noqa: B008
) -> RedirectResponse:
    """`tagger models activate VERSION` or `tagger models rollback`, run as a command: activation loads and
    checks the version first (with torch, which this process never imports) and announces it to the workers."""
    check_csrf(request, csrf)
    if action == "activate":
        _run_models_command(request, "activate", version)
        done = "activated"
    elif action == "rollback":
        _run_models_command(request, "rollback")
        done = "rolled+back"
    else:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "activate or rollback")
    return RedirectResponse(f"/review/models/{quote(version)}?done={done}", status.HTTP_303_SEE_OTHER)


def _run_models_command(request: Request, *args: str) -> None:
    from tagger.processes import run_tagger

    done = run_tagger(request.app.state.settings, "models", *args, timeout=600)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1].removeprefix("tagger: error: ")
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, reason)
