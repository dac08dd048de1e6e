"""The model versions: the list, one version with its metrics and plots, the held-out images it got most
wrong, and activate or roll back (run as `tagger models`)."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse

from tagger.tokens import Principal
from tagger.web.pages.shared import PAGE, decision_of, render
from tagger.web.session import check_csrf, require_user

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)


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
    return render(request, "models.html", principal, versions=versions)


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
    calibration = metrics.pop("calibration", None)
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
    return render(
        request,
        "model.html",
        principal,
        model=row,
        metrics={k: v for k, v in metrics.items() if isinstance(v, int | float)},
        per_tag=per_tag,
        calibration=calibration if isinstance(calibration, dict) else None,
        history=records["curves"] or [],
        lr_find=records["lr-find"],
        unreadable=unreadable,
        losses=len(training.get("highest_losses") or []),
        suspects=len(training.get("label_suspects") or []),
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
            worst["decision"] = decision_of(decided, item["image_id"], worst["tag"])
    return render(
        request,
        "losses.html",
        principal,
        model=row,
        items=items,
        cursor=cursor,
        back=f"/review/models/{quote(version)}/losses",
        may_review=principal.may("review"),
    )


@router.get("/review/models/{version}/suspects", response_class=HTMLResponse)
def suspects_page(
    version: str,
    request: Request,
    cursor: int = Query(0, ge=0, le=1000),  # noqa: B008
    principal: Principal = Depends(require_user("read")),  # noqa: B008
) -> HTMLResponse:
    """The review queue "labels most likely wrong": the undecided labels this version's training found most
    suspect, with accept/reject for each; a decision is the next training's label."""
    from tagger.labels import label_suspects

    row = _version(request, version)
    _, found = label_suspects(request.app.state.sessions, row.version)
    return render(
        request,
        "suspects.html",
        principal,
        model=row,
        items=[e for e in found if e["decision"] is None][:PAGE],
        folds=_training(row).get("folds"),
        cursor=cursor,
        back=f"/review/models/{quote(version)}/suspects",
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
