"""A webhook attempt against real HTTP receivers: no redirect is followed, one deadline covers the whole
attempt, and only a 2xx within it counts as delivered."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tagger.jobs.notify import DeliveryError, post_webhook
from tagger_client.webhooks import SIGNATURE_HEADER, verify

Answer = Callable[[socket.socket], None]


class _Receiver:
    """A real TCP server on loopback answering each request with `answer`; records what it was sent."""

    def __init__(self, answer: Answer) -> None:
        self.requests: list[bytes] = []
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), 0)
                while len(rest) < length:
                    rest += self.request.recv(65536)
                receiver.requests.append(head + b"\r\n\r\n" + rest)
                with contextlib.suppress(OSError):  # the client hung up: what a deadline does
                    answer(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiver(answer: Answer) -> Iterator[_Receiver]:
    server = _Receiver(answer)
    try:
        yield server
    finally:
        server.close()


def status(code: int, *headers: str) -> Answer:
    def answer(sock: socket.socket) -> None:
        lines = [f"HTTP/1.1 {code} X", *headers, "Content-Length: 0", "Connection: close", "", ""]
        sock.sendall("\r\n".join(lines).encode())

    return answer


def trickle(prefix: bytes, *, every: float = 0.2, total: float = 8.0) -> Answer:
    """Sends `prefix`, then one byte of a header (or body) every `every` seconds for `total` seconds."""

    def answer(sock: socket.socket) -> None:
        sock.sendall(prefix)
        end = time.monotonic() + total
        while time.monotonic() < end:
            sock.sendall(b"x")
            time.sleep(every)

    return answer


PAYLOAD = {"id": "job-1", "state": "done"}


def test_a_2xx_is_delivered_signed() -> None:
    with receiver(status(204)) as hook:
        assert post_webhook(hook.url, PAYLOAD, secret="s3cret", attempt=2, timeout=5) == 204
    [request] = hook.requests
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /hook HTTP/1.1")
    signature = next(
        line.split(b": ", 1)[1].decode() for line in head.split(b"\r\n") if line.startswith(SIGNATURE_HEADER.encode())
    )
    assert verify(body, "s3cret", signature) and b'"id": "job-1"' in body


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_no_redirect_is_followed_and_the_attempt_fails_naming_it(code: int) -> None:
    """A 301/302/303 would turn the POST into a bodyless GET; a 307/308 keeps the POST but may lead to a
    host outside TAGGER_WEBHOOK_HOSTS. Either way the target never hears from tagger."""
    with receiver(status(204)) as elsewhere, receiver(status(code, f"Location: {elsewhere.url}")) as hook:
        with pytest.raises(DeliveryError, match=rf"answered {code}, a redirect to {elsewhere.url}.*follow no redirect"):
            post_webhook(hook.url, PAYLOAD, secret="", attempt=1, timeout=5)
        time.sleep(0.2)
        assert len(hook.requests) == 1 and elsewhere.requests == []


@pytest.mark.parametrize(
    "answer",
    [
        trickle(b"HTTP/1.1 200 OK\r\nX-Slow: "),  # headers a byte at a time
        trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"),  # a body a byte at a time
        trickle(b"", every=3.0, total=3.0),  # nothing at all for longer than the deadline
    ],
    ids=["trickled-headers", "trickled-body", "silent"],
)
def test_one_deadline_covers_the_whole_attempt(answer: Answer) -> None:
    with receiver(answer) as hook:
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"no complete answer within 1 s"):
            post_webhook(hook.url, PAYLOAD, secret="", attempt=1, timeout=1)
        assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("code", [400, 404, 500, 503])
def test_anything_but_a_2xx_is_a_failed_attempt(code: int) -> None:
    with receiver(status(code)) as hook, pytest.raises(DeliveryError, match=rf"answered {code}"):
        post_webhook(hook.url, PAYLOAD, secret="", attempt=1, timeout=5)


def test_a_closed_port_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DeliveryError, match="unreachable"):
        post_webhook(f"http://127.0.0.1:{port}/hook", PAYLOAD, secret="", attempt=1, timeout=5)
