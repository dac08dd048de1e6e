"""The jobs: the recent ones, one job with its failures (or every image's outcome) a page at a time, and
pause, resume, cancel or retry."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from tagger.tokens import Principal
from tagger.web.pages.shared import MAX_ID, render
from tagger.web.session import check_csrf, require_user

router = APIRouter(include_in_schema=False)
ITEMS = 200  # images listed per page of a job


@router.get("/review/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, principal: Principal = Depends(require_user("read"))) -> HTMLResponse:  # noqa: B008
    from tagger.jobs.progress import recent

    return render(request, "jobs.html", principal, jobs=recent(request.app.state.sessions, 50))


@router.get("/review/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    job_id: str,
    request: Request,
    show: str = Query("failed", pattern="^(failed|all)$"),  # noqa: B008
    after: int = Query(0, ge=0, le=MAX_ID),  # noqa: B008
    principal: Principal = Depends(require_user("read")),  # noqa: B008
) -> HTMLResponse:
    """The job, and its failed images (or every image's outcome) a page at a time: each page one index range
    of the job's items after the last image id shown, however big the job."""
    from tagger.jobs.progress import items_pruned_at, outcomes, summary, with_broker_note
    from tagger_client.contract import ItemState

    sessions = request.app.state.sessions
    job = with_broker_note(summary(sessions, job_id), request.app.state.settings.broker_url)
    state = ItemState.FAILED if show == "failed" else None
    items = outcomes(sessions, job_id, limit=ITEMS + 1, after=after, state=state)
    more, items = len(items) > ITEMS, items[:ITEMS]
    return render(
        request,
        "job.html",
        principal,
        job=job,
        items=items,
        show=show,
        first=after == 0,
        next=f"/review/jobs/{job.id}?show={show}&after={items[-1]['image_id']}" if more else None,
        pruned=items_pruned_at(sessions, job_id),
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
