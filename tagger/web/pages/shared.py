"""What the review pages share: the templates, a page with its user and CSRF token, an error as a page,
the way back that stays on this site, and how a decision shows."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from tagger.tokens import Principal
from tagger.web.session import csrf_token

templates = Jinja2Templates(directory=str(Path(__file__).parent.parent / "templates"))
PAGE = 60
MAX_ID = 2**63 - 1  # image ids are BIGINT: a larger number names no image (404), not a database error
_NO_STORE = {"Cache-Control": "no-store"}


def render(request: Request, name: str, principal: Principal | None, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"user": principal, "csrf": csrf_token(request), **context}, headers=_NO_STORE
    )


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


def decision_of(decided: dict[tuple[int, str], bool], image_id: int, tag: str) -> str:
    """How a page shows a person's decision on (image, tag): accepted, rejected or not yet ("")."""
    state = decided.get((image_id, tag))
    return "" if state is None else ("accepted" if state else "rejected")


def local(path: str) -> str:
    """A redirect target that stays on this site's review pages (no open redirect), with its query."""
    page, _, query = path.partition("?")
    ok = re.fullmatch(r"/review(/[^?#\\]*)?", page) and "//" not in page and not re.search(r"[#\\\s]", query)
    return path if ok else "/review"
