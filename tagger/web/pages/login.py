"""The review pages' door: log in with a token (a signed session cookie follows), log out."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse

from tagger.web.pages.shared import local, render
from tagger.web.session import check_csrf, log_in, log_out, user

router = APIRouter(include_in_schema=False)


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/review", status.HTTP_303_SEE_OTHER)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/review") -> HTMLResponse:  # noqa: A002 - the form's name
    return render(request, "login.html", user(request), next=local(next), error=None)


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
        page = render(request, "login.html", None, next=local(next), error="That token is not valid (or revoked).")
        page.status_code = status.HTTP_401_UNAUTHORIZED
        return page
    return RedirectResponse(local(next), status.HTTP_303_SEE_OTHER)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> RedirectResponse:  # noqa: B008
    check_csrf(request, csrf)
    log_out(request)
    return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
