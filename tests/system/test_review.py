"""The review pages in a real headless Chromium (Debian's `chromium`, driven by Playwright) against the real
`tagger serve`, PostgreSQL and a real worker: log in, review a tag with the keyboard, bulk-accept; then the
labels are exactly those decisions and `tagger train --labels db` learns from them. Also: CSRF on every
form, escaped output, thumbnails that never read outside their storage root."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.db.images import image_ids, storage_id
from tagger.db.schema import Label, Tag, WebSession
from tagger.processes import child_env
from tagger.settings import Settings
from tagger.tokens import create
from tests.conftest import make_model, make_settings, write_stills
from tests.support.debian import debian_binary
from tests.support.servers import tagger_serve
from tests.support.training import SMALL
from tests.support.training import TINY as TRAIN_TINY

ROOT = Path(__file__).resolve().parents[2]
TAG = "night"
HOSTILE_KEY = "stills/<img src=x onerror=alert(1)>.jpg"
TINY = [*TRAIN_TINY, *SMALL, "--epochs", "1"]


@dataclass
class Site:
    settings: Settings
    sessions: Any
    base: str
    tokens: dict[str, str]
    archive: Path
    env: dict[str, str]
    trained: str | None = None  # the version the Chromium test trains on the labels it made


@pytest.fixture(scope="module")
def site(postgres, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    from tagger.broker.config import make_producer_app
    from tagger.broker.send import celery_sender
    from tagger.jobs.progress import wait
    from tagger.worker.local import LocalWorkers
    from tests.conftest import submit_keys

    tmp = tmp_path_factory.mktemp("review")
    settings = make_settings(
        tmp,
        postgres.create_database(f"review_{os.getpid()}"),
        broker_url=redis_url.rsplit("/", 1)[0] + "/9",
        web_cookie_secure=0,  # plain HTTP on loopback
        web_secret="s" * 40,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions, tags=(TAG, "day", "b/w"), favour=TAG)
    archive = tmp / "archive"
    keys = write_stills(archive, 23, seed=31)
    hostile = archive / HOSTILE_KEY
    hostile.write_bytes((archive / keys[0]).read_bytes())
    with LocalWorkers(settings, count=1, log_file=tmp / "workers.log") as workers:
        send = celery_sender(make_producer_app(settings, settings.broker_url))
        job = submit_keys(sessions, send, [*keys, HOSTILE_KEY], storage_url=archive.as_uri()).job_id
        assert wait(sessions, job, timeout=120, show_progress=False, alive=workers.alive).done == 24
    tokens = {role: create(sessions, f"{role}-person", role) for role in ("read", "review")}
    env = child_env(settings)
    try:
        with tagger_serve(env, tmp / "serve.log") as base:
            yield Site(settings, sessions, base, tokens, archive, env)
    finally:
        engine.dispose()


@contextmanager
def _logged_in(site: Site, role: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.base, follow_redirects=False, timeout=30) as client:
        page = client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        answer = client.post("/login", data={"token": site.tokens[role], "csrf": csrf, "next": "/review"})
        assert answer.status_code == 303, answer.text
        yield client


def _csrf(client: httpx.Client, path: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)  # type: ignore[union-attr]


def test_forms_need_their_csrf_token_and_pages_a_session(site: Site) -> None:
    form = {"image_id": "1", "tag": TAG, "decision": "accept", "cursor": "0", "back": f"/review/tags/{TAG}"}
    with httpx.Client(base_url=site.base, timeout=30) as anonymous:
        page = anonymous.get(f"/review/tags/{TAG}?order=least_sure")  # back there, query and all, after logging in
        assert (
            page.status_code == 303
            and page.headers["location"] == f"/login?next=%2Freview%2Ftags%2F{TAG}%3Forder%3Dleast_sure"
        )
        posted = anonymous.post("/review/decide", data=form)  # a form whose session is gone: back to /review
        assert posted.status_code == 303 and posted.headers["location"] == "/login?next=%2Freview"
        refused = anonymous.post("/login", data={"token": site.tokens["review"]})
        assert refused.status_code == 403 and "HTTPS-only" not in refused.text  # no CSRF token; plain HTTP allowed here
    with _logged_in(site, "review") as reviewer:
        assert reviewer.post("/review/decide", data=form).status_code == 403
        assert reviewer.post("/review/decide", data=form | {"csrf": "forged"}).status_code == 403
        assert reviewer.post(f"/review/tags/{TAG}/accept-above", data={"min_probability": "0"}).status_code == 403
        assert reviewer.post("/logout", data={}).status_code == 403
    with _logged_in(site, "read") as reader:
        csrf = _csrf(reader, f"/review/tags/{TAG}")
        assert reader.post("/review/decide", data=form | {"csrf": csrf}).status_code == 403  # read is below review
        assert reader.get("/review/tags/b/w").status_code == 200  # a tag with a slash has its page
    with _logged_in(site, "review") as reviewer:
        csrf = _csrf(reviewer, f"/review/tags/{TAG}")
        assert reviewer.post("/review/decide", data=form | {"csrf": csrf, "tag": "made-up"}).status_code == 404
        assert reviewer.post("/review/decide", data=form | {"csrf": csrf, "image_id": "999999"}).status_code == 404
        huge = str(10**22)  # beyond BIGINT: refused as input, never a database error
        assert reviewer.post("/review/decide", data=form | {"csrf": csrf, "image_id": huge}).status_code == 422
        assert reviewer.get(f"/review/images/{huge}").status_code == 422
        assert reviewer.get(f"/thumbs/{huge}").status_code == 422
    with site.sessions() as session:
        assert session.scalars(select(Label)).all() == []
        assert session.scalar(select(Tag.id).where(Tag.name == "made-up")) is None  # a form adds no names


def test_revoking_a_token_ends_its_browser_sessions(site: Site) -> None:
    from tagger.tokens import revoke

    site.tokens["leaving"] = create(site.sessions, "short-stay", "review")
    with _logged_in(site, "leaving") as browser:
        assert browser.get(f"/review/tags/{TAG}").status_code == 200
        revoke(site.sessions, "short-stay")
        after = browser.get(f"/review/tags/{TAG}")
        assert after.status_code == 303 and after.headers["location"].startswith("/login")


def test_logging_out_ends_the_session_even_for_a_copy_of_its_cookie(site: Site) -> None:
    with _logged_in(site, "read") as browser:
        copied = dict(browser.cookies)
        assert browser.get("/review").status_code == 200
        assert browser.post("/logout", data={"csrf": _csrf(browser, "/review")}).status_code == 303
    with httpx.Client(base_url=site.base, cookies=copied, timeout=30) as replay:
        after = replay.get("/review")
        assert after.status_code == 303 and after.headers["location"].startswith("/login")
    with _logged_in(site, "read") as again:  # the token itself still logs in
        assert again.get("/review").status_code == 200
        replaced = dict(again.cookies)
        relogged = again.post("/login", data={"token": site.tokens["read"], "csrf": _csrf(again, "/login")})
        assert relogged.status_code == 303 and again.get("/review").status_code == 200
        with httpx.Client(base_url=site.base, cookies=replaced, timeout=30) as replay:
            assert replay.get("/review").status_code == 303  # logging in again ended the session it replaced
        with site.sessions() as session, session.begin():  # 13 hours later
            session.execute(update(WebSession).values(created_at=WebSession.created_at - timedelta(hours=13)))
        assert again.get("/review").status_code == 303


def test_keys_render_as_text_and_thumbnails_stay_in_their_root(site: Site, tmp_path: Path) -> None:
    with _logged_in(site, "read") as reader:
        _thumbnails_and_escaping(site, reader, tmp_path)


def _thumbnails_and_escaping(site: Site, reader: httpx.Client, tmp_path: Path) -> None:
    html = reader.get(f"/review/tags/{TAG}").text
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img src=x onerror" not in html
    hostile = re.search(r'href="/review/images/(\d+)"><img src="/thumbs/\d+" alt="stills/&lt;img', html)
    assert hostile, "the hostile key's image is not listed"
    one = reader.get(f"/review/images/{hostile.group(1)}")
    assert one.status_code == 200 and "<img src=x onerror" not in one.text and f"{TAG}</a>" in one.text
    outside = tmp_path / "secret.jpg"
    outside.write_bytes((site.archive / "stills" / "still_00000.jpg").read_bytes())
    (site.archive / "stills" / "escape.jpg").symlink_to(outside)
    with site.sessions() as session, session.begin():
        root = storage_id(session, site.archive.as_uri())
        ids = image_ids(session, root, ["stills/escape.jpg", "stills/still_00001.jpg"])
    refused = reader.get(f"/thumbs/{ids['stills/escape.jpg']}")
    assert refused.status_code == 422 and "outside" in refused.text
    shown = reader.get(f"/thumbs/{ids['stills/still_00001.jpg']}")
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
    for path in ("/thumbs/..%2F..%2Fetc%2Fpasswd", "/thumbs/%2Fetc%2Fpasswd", "/thumbs/../../etc/passwd"):
        answer = reader.get(path)  # a path where an image id belongs: refused before any file is opened
        assert answer.status_code in (404, 422) and "root:" not in answer.text, path


def _train(site: Site, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tagger", "train", "--labels", "db", *TINY, "--no-activate", "--json", *extra],
        env=site.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_a_person_reviews_a_tag_in_chromium_and_training_learns_from_it(site: Site) -> None:
    from playwright.sync_api import sync_playwright

    from tagger.results import images_with_tag
    from tagger.similar import similar_to_image

    chromium = debian_binary("chromium", "chromium")
    order = [row.image_id for row in images_with_tag(site.sessions, TAG, min_probability=0.0, limit=100).items]
    assert len(order) == 24
    artifacts = Path(os.environ.get("TESTS_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    alerts: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
        page.goto(f"{site.base}/review/tags/{TAG}")
        assert "/login" in page.url
        page.fill("input[name=token]", site.tokens["review"])
        page.click("button[type=submit]")
        page.wait_for_url(f"**/review/tags/{TAG}")
        for key in ("a", "a", "a", "r"):  # three accepted and one rejected, with the keyboard alone
            with page.expect_navigation():
                page.keyboard.press(key)
        assert page.locator(".item.current").get_attribute("data-index") == "4"
        page.fill("input[name=min_probability]", "0.9")
        with page.expect_navigation():
            page.click("#bulk button[type=submit]")
        assert "Accepted 20 image(s)" in page.content()
        assert page.locator("img[src=x]").count() == 0  # the hostile key is text, not markup
        page.screenshot(path=str(artifacts / "review-page.png"), full_page=True)

        with site.sessions() as session:
            labels = session.execute(select(Label.image_id, Tag.name, Label.positive, Label.decided_by).join(Tag)).all()
        expected = [(i, TAG, True, "review-person") for i in order[:3]] + [(order[3], TAG, False, "review-person")]
        expected += [(i, TAG, True, "review-person") for i in order[4:]]  # probability ~1.0: all above 0.9
        assert sorted(labels) == sorted(expected)

        found = _train(site, "--find-lr")  # the range test first: the run after it keeps its curve
        report = _train(site)
        assert report["version"] and report["train_images"] + report["valid_images"] == 24, report
        with site.sessions() as session:
            from tagger.db.schema import ModelVersion

            meta = session.scalars(select(ModelVersion.meta).where(ModelVersion.version == report["version"])).one()
        assert meta["training"]["labels"] == "db"
        assert meta["training"]["lr_find"]["suggestion"] == found["suggested_lr"]
        site.trained = report["version"]

        # The new version's page draws its curves and range test; its worst held-out images take decisions.
        page.goto(f"{site.base}/review/models/{report['version']}")
        page.wait_for_load_state("load")
        widths = page.eval_on_selector_all("img.plot", "imgs => imgs.map(i => i.naturalWidth)")
        assert len(widths) == 2 and all(w > 100 for w in widths), widths
        page.screenshot(path=str(artifacts / "model-page.png"), full_page=True)
        with page.expect_navigation():
            page.click("text=held-out images with the highest loss")
        first = meta["training"]["highest_losses"][0]
        assert page.locator(".item .key").first.inner_text() == first["key"]
        disputed = first["worst"][0]
        choice = "reject" if disputed["labelled"] else "accept"  # what the person says the label should be
        with page.expect_navigation():
            page.locator(f".item >> nth=0 >> tr:has-text('{disputed['tag']}') >> button.{choice}").click()
        assert page.locator(".item.current").get_attribute("data-index") == "0"  # stays on the image
        with site.sessions() as session:
            decided = session.execute(
                select(Label.positive).join(Tag).where(Label.image_id == first["image_id"], Tag.name == disputed["tag"])
            ).scalar_one()
        assert decided is (choice == "accept")

        # One still's page: a strip of the stills most like it, its byte-for-byte copy (the hostile key) first,
        # and a decision that covers its near-duplicates too.
        with site.sessions() as session:
            url = site.archive.as_uri()
            ids = image_ids(session, storage_id(session, url), ["stills/still_00000.jpg", HOSTILE_KEY])
        original, copy = ids["stills/still_00000.jpg"], ids[HOSTILE_KEY]
        page.goto(f"{site.base}/review/images/{original}")
        strip = page.locator(".similar a")
        assert strip.count() >= 1 and strip.first.get_attribute("data-image-id") == str(copy)
        assert strip.first.inner_text().strip().endswith(("1.000", "0.999"))
        listed = {int(a.get_attribute("data-image-id") or 0) for a in page.locator(".similar a.near").all()}
        assert copy in listed
        page.screenshot(path=str(artifacts / "image-page.png"), full_page=True)
        with page.expect_navigation():
            page.locator(f"tr:has-text('{TAG}') >> button.reject.group").click()
        threshold = site.settings.duplicate_threshold
        near = similar_to_image(site.sessions, original, limit=1000, min_similarity=threshold)
        group = {h.image_id for h in near.hits}  # the still itself and all its near-duplicates, the strip's and more

        # The tag's page with one still per group: each still shown stands for its near-duplicates (with their
        # count), which are not shown again; together they are every still of the page.
        page.goto(f"{site.base}/review/tags/{TAG}")
        with page.expect_navigation():
            page.click("#fold")
        sizes = {}
        for card in page.locator(".item").all():
            image_id = int((card.locator("a").first.get_attribute("href") or "").rsplit("/", 1)[1])
            badge = card.locator(".group-size")
            sizes[image_id] = int(badge.get_attribute("data-size") or 0) if badge.count() else 1
        covered: set[int] = set()
        for image_id, size in sizes.items():
            assert image_id not in covered  # not a near-duplicate of a still shown before it
            mates = similar_to_image(site.sessions, image_id, limit=1000, min_similarity=threshold).hits
            assert size == len({h.image_id for h in mates} | {image_id})
            covered |= {h.image_id for h in mates} | {image_id}
        assert set(order) <= covered and len(sizes) < len(order) and max(sizes.values()) > 1
        page.screenshot(path=str(artifacts / "tag-page-groups.png"), full_page=True)

        # The queue "labels most likely wrong": its first undecided suspect, corrected in the browser.
        from tagger.labels import label_suspects, labels_from_db

        suspect = next(s for s in label_suspects(site.sessions, report["version"])[1] if s["decision"] is None)
        correction = "reject" if suspect["labelled"] else "accept"
        page.goto(f"{site.base}/review/models/{report['version']}")
        with page.expect_navigation():
            page.click("text=Labels most likely wrong")
        assert page.locator(".item .key").first.inner_text() == suspect["key"]
        with page.expect_navigation():
            page.locator(f".item >> nth=0 >> button.{correction}").click()
        page.goto(f"{site.base}/review/unfamiliar")  # the queue "unfamiliar first" opens for a reviewer
        assert "Unfamiliar first" in page.content()
        browser.close()
    assert alerts == []
    assert {original} | listed <= group
    with site.sessions() as session:
        rejected = session.scalars(
            select(Label.image_id).join(Tag).where(Tag.name == TAG, Label.positive.is_(False))
        ).all()
        corrected = labels_from_db(session)  # what the next `tagger train --labels db` reads
    corrected_here = {suspect["image_id"]} if suspect["tag"] == TAG else set()  # the suspect's own correction
    assert group <= set(rejected) and set(rejected) <= group | {order[3], first["image_id"]} | corrected_here
    by_key = dict(zip(corrected.keys, corrected.tags, strict=True))
    assert (suspect["tag"] in by_key[suspect["key"]]) is (correction == "accept")


@pytest.fixture()
def trained(site: Site) -> str:
    """The version the Chromium test trained on its decisions; when that test did not run first (`-k`, a
    failure before it trained), the same training on the same kind of decisions, made here."""
    if site.trained is None:
        from tagger.labels import accept_above, decide
        from tagger.results import images_with_tag

        order = [row.image_id for row in images_with_tag(site.sessions, TAG, min_probability=0.0, limit=100).items]
        decide(site.sessions, order[3], rejected=[TAG], by="review-person")
        accept_above(site.sessions, TAG, 0.0, by="review-person")
        _train(site, "--find-lr")
        site.trained = _train(site)["version"]
    return site.trained


def test_training_keeps_its_worst_held_out_images_and_the_pages_plot_from_the_registry(
    site: Site, trained: str
) -> None:
    from tagger import labels
    from tagger.storage import canonical_url

    version = trained
    with site.sessions() as session:
        from tagger.db.schema import ModelVersion

        training = session.scalars(select(ModelVersion.meta).where(ModelVersion.version == version)).one()["training"]
        worst = training["highest_losses"]
        assert len(worst) == training["valid_images"]  # fewer than 100 held out: all of them, worst first
        assert [w["loss"] for w in worst] == sorted((w["loss"] for w in worst), reverse=True)
        url = canonical_url(site.archive.as_uri())
        assert {w["storage"] for w in worst} == {url}
        ids = image_ids(session, storage_id(session, url), [w["key"] for w in worst])
        assert [w["image_id"] for w in worst] == [ids[w["key"]] for w in worst]
    with httpx.Client(base_url=site.base, timeout=30) as anonymous:
        assert anonymous.get(f"/review/models/{version}/curves.png").status_code in (303, 401)
    with _logged_in(site, "read") as reader:
        model_page = reader.get(f"/review/models/{version}").text
        assert f"<title>{version} · tagger review</title>" in model_page and "Training curves" in model_page
        for plot in ("curves", "lr-find"):
            drawn = reader.get(f"/review/models/{version}/{plot}.png")
            assert drawn.status_code == 200 and drawn.content.startswith(b"\x89PNG"), plot
        assert reader.get(f"/review/models/{version}/weights.png").status_code == 404
        assert reader.get("/review/models/no-such-version/curves.png").status_code == 404
        listing = reader.get(f"/review/models/{version}/losses").text
        shown = re.findall(r'<div class="key">([^<]*)</div>', listing)
        assert [html.unescape(k) for k in shown] == [w["key"] for w in worst]
        assert "button" not in listing.split('class="grid"', 1)[1].split("<script>")[0]  # read cannot decide
        # The queue "labels most likely wrong": the undecided suspects the training kept, most suspect first.
        suspects = [s for s in training["label_suspects"] if s["image_id"] is not None]
        assert suspects and "/suspects" in model_page
        queue = reader.get(f"/review/models/{version}/suspects").text
        shown = [html.unescape(k) for k in re.findall(r'<div class="key">([^<]*)</div>', queue)]
        undecided = [s["key"] for s in labels.label_suspects(site.sessions, version)[1] if s["decision"] is None]
        assert shown == undecided[: len(shown)] and shown
        assert reader.get("/review/unfamiliar").status_code == 200  # the queue "unfamiliar first"


def test_jobs_are_followed_and_steered_from_the_browser_with_the_right_role(site: Site) -> None:
    import redis

    from tagger_client.contract import QUEUE_INTERACTIVE

    with site.sessions() as session:
        from tagger.db.schema import Job

        job_id = session.scalars(select(Job.id)).one()
    broker = redis.Redis.from_url(site.settings.broker_url)
    waiting = broker.llen(QUEUE_INTERACTIVE)
    with _logged_in(site, "read") as reader:
        assert job_id[:8] in reader.get("/review/jobs").text
        page = reader.get(f"/review/jobs/{job_id}")
        assert page.status_code == 200 and "24 tagged" in page.text and "Retry" not in page.text
        csrf = _csrf(reader, f"/review/jobs/{job_id}")
        assert reader.post(f"/review/jobs/{job_id}/retry", data={"csrf": csrf}).status_code == 403  # read only
        least = reader.get(f"/review/tags/{TAG}?order=least_sure").text
        shown = [float(p) for p in re.findall(r"p = ([0-9.]+)", least)]
        assert shown == sorted(shown) and len(shown) == 24
    with _logged_in(site, "review") as steering:
        assert steering.post(f"/review/jobs/{job_id}/retry", data={}).status_code == 403  # no CSRF token
        csrf = _csrf(steering, f"/review/jobs/{job_id}")
        sent = steering.post(f"/review/jobs/{job_id}/retry", data={"csrf": csrf})
        assert sent.status_code == 303 and sent.headers["location"] == f"/review/jobs/{job_id}?sent=retry"
        assert steering.post(f"/review/jobs/{job_id}/explode", data={"csrf": csrf}).status_code == 404
        assert steering.post("/review/jobs/not-a-job/pause", data={"csrf": csrf}).status_code == 422
        least = steering.get(f"/review/tags/{TAG}?order=least_sure").text  # a decision keeps the page's order
        back = html.unescape(re.search(r'name="back" value="([^"]+)"', least).group(1))  # type: ignore[union-attr]
        first = re.search(r'name="image_id" value="(\d+)"', least).group(1)  # type: ignore[union-attr]
        form = {"csrf": csrf, "image_id": first, "tag": TAG, "decision": "accept", "cursor": "0", "back": back}
        decided = steering.post("/review/decide", data=form)
        assert decided.headers["location"] == f"/review/tags/{TAG}?order=least_sure&cursor=1#item-1"
        bad_tag = steering.post("/review/tags/Two Words/accept-above", data={"csrf": csrf, "min_probability": "0.9"})
        assert bad_tag.status_code == 422
    assert broker.llen(QUEUE_INTERACTIVE) == waiting + 1  # the control message, as the API and client send it
    broker.close()


def test_model_pages_show_metrics_and_an_admin_activates_and_rolls_back(site: Site) -> None:
    from tagger import registry

    with site.sessions() as session:
        serving = registry.active(session).version
    candidate = make_model(site.settings, site.sessions, tags=(TAG, "day", "b/w"), seed=3, activate=False)
    site.tokens["admin"] = create(site.sessions, "admin-person", "admin")
    with _logged_in(site, "read") as reader:
        listed = reader.get("/review/models").text
        assert serving in listed and candidate in listed
        page = reader.get(f"/review/models/{candidate}")
        assert page.status_code == 200 and "Activate" not in page.text  # read cannot switch models
    with _logged_in(site, "review") as reviewer:
        csrf = _csrf(reviewer, f"/review/models/{candidate}")
        assert reviewer.post(f"/review/models/{candidate}/activate", data={"csrf": csrf}).status_code == 403
    with _logged_in(site, "admin") as admin:
        assert admin.post(f"/review/models/{candidate}/activate", data={}).status_code == 403  # no CSRF token
        csrf = _csrf(admin, f"/review/models/{candidate}")
        switched = admin.post(f"/review/models/{candidate}/activate", data={"csrf": csrf})
        assert switched.status_code == 303, switched.text
        with site.sessions() as session:
            assert registry.active(session).version == candidate
        back = admin.post(f"/review/models/{candidate}/rollback", data={"csrf": csrf})
        assert back.status_code == 303, back.text
        with site.sessions() as session:
            assert registry.active(session).version == serving
        missing = admin.post("/review/models/no-such-version/activate", data={"csrf": csrf})
        assert missing.status_code == 422 and "no model version" in missing.text


def test_a_tag_page_links_to_a_next_page_only_when_there_is_one(site: Site) -> None:
    """Exactly a page of images: no link to an empty page; one more: the link, and the next page holds it."""
    from tagger import registry
    from tagger.db.schema import Image, Suggestion
    from tagger.web.pages.shared import PAGE

    def add(keys: list[str], probability: float) -> None:
        with site.sessions() as session, session.begin():
            version_id = registry.active(session).id
            tag_id = registry.ensure_tags(session, ["pager"])["pager"]
            ids = image_ids(session, storage_id(session, "file:///pager-test"), keys)
            for image_id in ids.values():
                session.get(Image, image_id).model_version_id = version_id  # type: ignore[union-attr]
                session.add(
                    Suggestion(image_id=image_id, tag_id=tag_id, model_version_id=version_id, probability=probability)
                )

    def link(page: str, rel: str) -> str:
        found = re.search(rf'<a href="([^"]+)" rel="{rel}">', page)
        assert found, f"no {rel} link"
        return html.unescape(found.group(1))

    add([f"p/{i:03d}.jpg" for i in range(PAGE)], 0.9)  # all tied: the pages are ordered by image id
    with _logged_in(site, "read") as client:
        first = client.get("/review/tags/pager")
        assert first.status_code == 200 and first.text.count('class="item ') == PAGE
        assert 'rel="next"' not in first.text and 'rel="prev"' not in first.text
        add(["p/last.jpg"], 0.5)
        first = client.get("/review/tags/pager")
        assert first.text.count('class="item ') == PAGE and 'rel="next"' in first.text
        second = client.get(link(first.text, "next"))  # a keyset position: the row after the page's last
        assert second.text.count('class="item ') == 1 and "p/last.jpg" in second.text
        assert 'rel="next"' not in second.text
        back = client.get(link(second.text, "prev"))  # the page before a position, turned round
        assert re.findall(r'<div class="key">([^<]*)</div>', back.text) == [f"p/{i:03d}.jpg" for i in range(PAGE)]
        assert 'rel="prev"' not in back.text and 'rel="next"' in back.text
        forged = client.get("/review/tags/pager?after=bm90LWEtY3Vyc29y")
        assert forged.status_code == 422 and "not one a page handed out" in forged.text


def test_errors_on_the_pages_are_pages_and_on_the_api_stay_json(site: Site) -> None:
    """A person's browser gets a readable, escaped page for 403, 404 and 422; API clients keep the JSON."""
    from tagger import registry

    with site.sessions() as session:
        version = registry.active(session).version
    with _logged_in(site, "read") as reader:
        hostile = reader.get("/review/tags/<script>alert(1)</script>")
        assert hostile.status_code == 404 and hostile.headers["content-type"].startswith("text/html")
        assert "no tag" in hostile.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile.text
        assert "<script>alert(1)" not in hostile.text
        bounds = reader.get(f"/review/tags/{TAG}?cursor=-1")
        assert bounds.status_code == 422 and bounds.headers["content-type"].startswith("text/html")
        assert "cursor: Input should be greater than or equal to 0" in bounds.text
        refused = reader.post(f"/review/models/{version}/activate", data={"csrf": _csrf(reader, "/review/models")})
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
        assert "Back to the tags" in refused.text
    api = httpx.get(f"{site.base}/api/v1/jobs/no-such-job", headers={"Authorization": f"Bearer {site.tokens['read']}"})
    assert api.status_code == 404 and api.headers["content-type"] == "application/json" and "detail" in api.json()
    bounds = httpx.get(
        f"{site.base}/api/v1/tags/{TAG}/images?limit=-1", headers={"Authorization": f"Bearer {site.tokens['read']}"}
    )
    assert bounds.status_code == 422 and isinstance(bounds.json()["detail"], list)


def test_a_plot_whose_record_was_corrupted_says_so(site: Site) -> None:
    """Hand-edited training records (no suggestion, a string for a list, rows that are not records): the
    model page stands and says which record cannot be read; the plot is refused with its reason."""
    from sqlalchemy import select, update

    from tagger.db.schema import ModelVersion

    broken = make_model(site.settings, site.sessions, tags=(TAG, "day", "b/w"), seed=9, activate=False)
    mine = ModelVersion.version == broken
    for plot, record in (
        ("lr-find", {"lr_find": {"lrs": [1e-4, 1e-3], "losses": [0.7, 0.6]}}),
        ("lr-find", {"lr_find": {"lrs": "many", "losses": 3, "suggestion": 0.1}}),
        ("lr-find", {"lr_find": "not a record"}),
        ("curves", {"history": ["epoch 1", "epoch 2"]}),
        ("curves", {"history": {"epoch": 1}}),
    ):
        with site.sessions() as session, session.begin():
            meta = dict(session.scalar(select(ModelVersion.meta).where(mine)) or {})
            session.execute(update(ModelVersion).where(mine).values(meta={**meta, "training": record}))
        with _logged_in(site, "read") as reader:
            page = reader.get(f"/review/models/{broken}")
            assert page.status_code == 200 and f"the {plot} record cannot be read" in page.text, record
            drawn = reader.get(f"/review/models/{broken}/{plot}.png")
            assert (
                drawn.status_code == 500 and f"the {plot} record of {broken} cannot be drawn" in drawn.json()["detail"]
            )
