"""The HTTP API of `tagger serve`, run as a real uvicorn server against PostgreSQL and Redis, with a real
worker tagging what it submits; every route checked for its token and role."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.schema import ApiToken, Label, Tag
from tagger.processes import child_env
from tagger.settings import Settings
from tagger.tokens import ROLES, create, revoke
from tagger.worker.local import LocalWorkers
from tests.conftest import make_model, make_settings, write_stills
from tests.support.servers import tagger_serve


@dataclass
class Api:
    settings: Settings
    sessions: Any
    base: str
    tokens: dict[str, str]  # role -> a live token of that role
    url: str
    keys: list[str]
    log: Path

    def call(self, method: str, path: str, role: str | None = "admin", **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.request(method, self.base + path, headers=headers, timeout=30, **kw)


@pytest.fixture(scope="module")
def api(postgres, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("api")
    settings = make_settings(
        tmp,
        postgres.create_database(f"api_{os.getpid()}"),
        broker_url=redis_url.rsplit("/", 1)[0] + "/8",
        web_cookie_secure=0,  # plain HTTP on loopback
        storage_url=(tmp / "archive").as_uri(),  # the deployment's storage: HTTP jobs read from it only
        webhook_hosts="hooks.site.example",
        api_max_body_bytes=65536,  # small, so the 413 test sends little
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions)
    keys = write_stills(tmp / "archive", 8, seed=21)
    tokens = {role: create(sessions, f"{role}-user", role) for role in ROLES}
    env = child_env(settings)
    try:
        with tagger_serve(env, tmp / "serve.log") as base:
            yield Api(settings, sessions, base, tokens, (tmp / "archive").as_uri(), keys, tmp / "w.log")
    finally:
        engine.dispose()


PUBLIC = {"/", "/login", "/logout"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def _session(api: Api, role: str) -> Iterator[httpx.Client]:
    """A browser session of `role`, logged in through the form (with its CSRF token)."""
    with httpx.Client(base_url=api.base, timeout=30) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
        assert client.post("/login", data={"token": api.tokens[role], "csrf": csrf}).status_code == 303
        yield client


def _routes(api: Api) -> list[tuple[str, str, str]]:
    """(method, path with its parameters filled, the role it requires) of every route the app serves."""
    from fastapi.routing import APIRoute

    from tagger.web.app import create_app

    def served(routes: list[Any]) -> Iterator[APIRoute]:  # an included router is wrapped, with its own routes
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):
                yield from served(route.original_router.routes)

    app = create_app(api.settings, api.sessions)
    filled = {
        "{job_id}": "0" * 32,
        "{action}": "cancel",
        "{tag}": "night",
        "{image_id}": "1",
        "{version}": "v1",
        "{plot}": "curves",
    }
    found = []
    for route in served(app.routes):
        roles = [d.call.required_role for d in route.dependant.dependencies if hasattr(d.call, "required_role")]
        if route.path in PUBLIC:  # the way in (CSRF-checked) and a redirect to it
            assert roles == [], route.path
            continue
        assert len(roles) == 1, f"{route.path} does not require exactly one role"
        path = route.path
        for name, value in filled.items():
            path = path.replace(name, value)
        found += [(method, path, roles[0]) for method in sorted(route.methods)]
    return found


def test_every_route_refuses_a_missing_or_wrong_token_and_a_role_below_its_own(api: Api) -> None:
    routes = _routes(api)
    assert {path for _, path, _ in routes} >= {"/api/v1/jobs", "/api/v1/labels", "/api/v1/openapi.json"}
    pages = [(m, p, r) for m, p, r in routes if not p.startswith("/api/")]
    assert {p for _, p, _ in pages} >= {"/review", "/review/decide", "/thumbs/1", "/review/images/1"}
    for method, path, role in pages:  # the browser's routes: a session, then its role
        anonymous = httpx.request(method, api.base + path, headers=_bearer(api.tokens["admin"]))
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login"), (method, path)
        for lower in ROLES[: ROLES.index(role)]:
            with _session(api, lower) as browser:
                assert browser.request(method, path).status_code == 403, (method, path, lower)
    for method, path, role in [(m, p, r) for m, p, r in routes if p.startswith("/api/")]:
        missing = api.call(method, path, role=None)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer", (method, path)
        wrong = httpx.request(method, api.base + path, headers={"Authorization": "Bearer tgr_not-a-token"})
        assert wrong.status_code == 401, (method, path)
        basic = httpx.request(method, api.base + path, auth=("admin-user", api.tokens["admin"]))
        assert basic.status_code == 401, (method, path)  # a token only as a bearer
        for lower in ROLES[: ROLES.index(role)]:
            assert api.call(method, path, role=lower).status_code == 403, (method, path, lower)
    assert httpx.get(api.base + "/docs").status_code == 404  # FastAPI's open docs are not served
    schema = api.call("GET", "/api/v1/openapi.json", role="read").json()
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/labels"} <= set(schema["paths"])


def test_a_job_submitted_over_http_is_tagged_and_its_decisions_recorded(api: Api) -> None:
    with LocalWorkers(api.settings, count=1, log_file=api.log):
        submitted = api.call("POST", "/api/v1/jobs", role="submit", json={"keys": api.keys, "storage_url": api.url})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        deadline = time.monotonic() + 120
        while True:
            status = api.call("GET", f"/api/v1/jobs/{job_id}", role="read")
            if status.status_code == 200 and status.json()["state"] == "done":
                break
            assert time.monotonic() < deadline, api.log.read_text()[-3000:]
            time.sleep(0.3)
    assert status.json()["done"] == len(api.keys)
    bad = api.call("POST", "/api/v1/jobs", role="submit", json={"keys": api.keys, "prefix": "x/"})
    assert bad.status_code == 422 and "exactly one" in bad.text
    unknown = api.call("POST", "/api/v1/jobs", role="submit", json={"keys": api.keys, "colour": "red"})
    assert unknown.status_code == 422
    for body, reason in (  # the storage's key rules, at submission: nothing reaches a worker
        ({"keys": []}, "keys is empty"),
        ({"keys": ["stills/../../etc/passwd"]}, "'..'"),
        ({"keys": ["/etc/passwd"]}, "absolute path"),
        ({"prefix": "../../"}, "'..'"),
        ({"keys": ["a\x00b.jpg"]}, "control"),
    ):
        refused = api.call("POST", "/api/v1/jobs", role="submit", json=body)
        assert refused.status_code == 422 and reason in refused.text, (body, refused.text)
    deep = api.call("GET", "/api/v1/tags/night/images", role="read", params={"offset": 10**20})
    assert deep.status_code == 422
    elsewhere = api.call("POST", "/api/v1/jobs", role="submit", json={"keys": ["passwd"], "storage_url": "file:///etc"})
    assert elsewhere.status_code == 403 and "admin" in elsewhere.text
    for hook in ("http://169.254.169.254/latest/meta-data", "http://localhost:6379/", "https://evil.example/h"):
        refused = api.call("POST", "/api/v1/jobs", role="submit", json={"keys": api.keys[:1], "webhook": hook})
        assert refused.status_code == 403 and "TAGGER_WEBHOOK_HOSTS" in refused.text, hook
    hooked = api.call(
        "POST", "/api/v1/jobs", role="submit", json={"keys": api.keys[:1], "webhook": "https://hooks.site.example/t"}
    )
    assert hooked.status_code == 202  # an allowed host (the worker's delivery: tests/system/test_client.py)

    key = api.keys[0]
    shown = api.call("GET", "/api/v1/images/suggestions", role="read", params={"key": key, "storage_url": api.url})
    assert shown.status_code == 200 and isinstance(shown.json(), list)
    with api.sessions() as session:
        tags = list(session.scalars(select(Tag.name).order_by(Tag.id)))
    by_tag = api.call("GET", f"/api/v1/tags/{tags[0]}/images", role="read", params={"min_probability": 0})
    assert by_tag.status_code == 200
    assert all(row["storage_url"] == api.url for row in by_tag.json())
    assert api.call("GET", "/api/v1/tags/no-such-tag/images", role="read").status_code == 404

    decision = {"key": key, "storage_url": api.url, "accepted": [tags[0]], "rejected": [tags[1]]}
    recorded = api.call("POST", "/api/v1/labels", role="review", json=decision)
    assert recorded.status_code == 200, recorded.text
    assert api.call("POST", "/api/v1/labels", role="submit", json=decision).status_code == 403
    with api.sessions() as session:
        labels = session.execute(select(Tag.name, Label.positive, Label.decided_by).join(Tag)).all()
    assert sorted(labels) == sorted([(tags[0], True, "review-user"), (tags[1], False, "review-user")])
    missing = api.call("POST", "/api/v1/labels", role="review", json=decision | {"key": "stills/none.jpg"})
    assert missing.status_code == 404
    for bad in (["two words"], [""], ["x" * 300], ["-dash-first"]):
        refused = api.call("POST", "/api/v1/labels", role="review", json=decision | {"accepted": bad, "rejected": []})
        assert refused.status_code == 422, bad
    shouted = api.call("POST", "/api/v1/labels", role="review", json=decision | {"accepted": [tags[0].upper()]})
    assert shouted.status_code == 200
    with api.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Tag)) == len(tags)  # no tag made up by a request


def test_tokens_are_stored_hashed_listed_without_secrets_and_revoked_at_once(api: Api) -> None:
    secret = create(api.sessions, "short-lived", "read")
    assert httpx.get(api.base + "/api/v1/openapi.json", headers={"Authorization": f"Bearer {secret}"}).is_success
    with api.sessions() as session:
        stored, first_use = session.execute(
            select(ApiToken.token_sha256, ApiToken.last_used_at).where(ApiToken.name == "short-lived")
        ).one()
    assert secret not in stored and len(stored) == 64 and first_use is not None
    assert httpx.get(api.base + "/api/v1/openapi.json", headers={"Authorization": f"Bearer {secret}"}).is_success
    with api.sessions() as session:  # kept to the minute: a second request within it writes nothing
        assert session.scalars(select(ApiToken.last_used_at).where(ApiToken.name == "short-lived")).one() == first_use
    env = child_env(api.settings)
    listed = subprocess.run([sys.executable, "-m", "tagger", "tokens", "list"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and "short-lived  read  live" in listed.stdout
    assert not any(t in listed.stdout + listed.stderr for t in [secret, *api.tokens.values()])
    revoke(api.sessions, "short-lived")
    after = httpx.get(api.base + "/api/v1/openapi.json", headers={"Authorization": f"Bearer {secret}"})
    assert after.status_code == 401


NUL_PARAMETERS = [
    ("GET", "/api/v1/images/suggestions?key=a%00b"),
    ("GET", "/api/v1/images/suggestions?storage_url=file%3A%2F%2F%2Fx%00&key=a.jpg"),
    ("GET", "/api/v1/tags/night%00/images"),
    ("GET", "/api/v1/jobs/abc%00def"),
    ("POST", "/api/v1/jobs/abc%00def/cancel"),
]


def test_bad_input_is_a_4xx_never_a_500(api: Api) -> None:
    """NUL characters, which PostgreSQL cannot store, in each kind of parameter (query, path) and in a JSON
    body; a body over TAGGER_API_MAX_BODY_BYTES by its length and streamed in chunks without one."""
    for method, path in NUL_PARAMETERS:
        answer = api.call(method, path)
        assert answer.status_code == 422 and "NUL" in answer.json()["detail"], (method, path, answer.text)
    nul_body = api.call("POST", "/api/v1/labels", json={"image_id": 1, "accepted": ["night\u0000"], "rejected": []})
    assert 400 <= nul_body.status_code < 500, nul_body.text
    nul_key = api.call("POST", "/api/v1/jobs", json={"keys": ["a\u0000.jpg"]})
    assert nul_key.status_code == 422, nul_key.text
    limit = api.settings.api_max_body_bytes
    big = api.call("POST", "/api/v1/jobs", json={"keys": [f"k/{i:09d}.jpg" for i in range(limit // 16)]})
    assert big.status_code == 413 and "TAGGER_API_MAX_BODY_BYTES" in big.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused as it streams past the limit
        yield b'{"keys": ['
        for _ in range(limit // 65536 + 2):
            yield b'"k/x.jpg",' * 6553
        yield b'"k/y.jpg"]}'

    streamed = httpx.post(api.base + "/api/v1/jobs", content=chunks(), headers=_bearer(api.tokens["admin"]), timeout=60)
    assert streamed.status_code == 413, streamed.text


def test_schemathesis_finds_no_server_error_over_the_whole_schema(api: Api) -> None:
    """Property-based requests from the app's own OpenAPI schema (Schemathesis), against the real server on
    PostgreSQL: every operation, its documented examples, boundary values and fuzzed ones."""
    st = Path(sys.executable).parent / "st"
    done = subprocess.run(
        [
            str(st),
            "run",
            f"{api.base}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {api.tokens['admin']}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--workers",
            "1",
            "--seed",
            "7",
            "--request-timeout",
            "30",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", done.stdout)
    assert selected and len(set(selected.groups())) == 1 and int(selected.group(1)) >= 6, done.stdout[-2000:]
