"""The jobs: the recent ones, one job with its failures, and pause, resume, cancel or retry."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from tagger.tokens import Principal
from tagger.web.pages.shared import render
from tagger.web.session import check_csrf, require_user

router = APIRouter(include_in_schema=False)


@router.get("/review/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, principal: Principal = Depends(require_user("read"))) -> HTMLResponse:  # noqa: B008
    from tagger.jobs.progress import recent

    return render(request, "jobs.html", principal, jobs=recent(request.app.state.sessions, 50))


@router.get("/review/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, request: Request, principal: Principal = Depends(require_user("read"))) -> HTMLResponse:  # noqa: B008
    from tagger.jobs.progress import failures, summary, with_broker_note

    sessions = request.app.state.sessions
    job = with_broker_note(summary(sessions, job_id), request.app.state.settings.broker_url)
    return render(
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
