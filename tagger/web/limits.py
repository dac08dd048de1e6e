"""What a request may be, checked before any route reads it: a body over TAGGER_API_MAX_BODY_BYTES is
refused with 413 (by its Content-Length, or as it streams in), and a NUL character in the path or query,
which no key, tag or name holds and PostgreSQL cannot store, with 422."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _TooLarge(HTTPException):
    """Raised as the body streams past the limit: an HTTPException, so FastAPI's body reading passes it on to
    the app's handlers (it turns any other error there into a 400) and the answer is a 413 with the reason."""


class RequestLimits:
    """Pure ASGI middleware (no body is buffered by it): `max_body` bytes at most per request."""

    def __init__(self, app: ASGIApp, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = bytes(scope.get("raw_path") or scope["path"].encode()) + b"?" + bytes(scope.get("query_string", b""))
        if b"\x00" in raw or b"%00" in raw:
            await _answer(send, 422, "a NUL character (%00) in the path or query: no key, tag or name holds one")
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _answer(send, 413, self._too_large())
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(413, self._too_large())
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await _answer(send, 413, self._too_large())

    def _too_large(self) -> str:
        return (
            f"the request body is over {self.max_body} bytes (TAGGER_API_MAX_BODY_BYTES): submit a long list of "
            "keys as a prefix or a query, or in several jobs"
        )


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
