"""The review web UI over real HTTP (uvicorn on 127.0.0.1, SQLite): login and CSRF, queue order,
blurred previews, audited reveals and the exposure counter, decisions and the stale-version
conflict, appeals, LE report button, transparency downloads."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api_live import Live, live_server
from conftest import PHOTOS
from lifeguard.reports import audit
from lifeguard.reports.evidence import KEY_ENV
from lifeguard.settings import Settings
from review_web_seed import EVIDENCE_KEY, PW, Seeded, seed

pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos missing")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Live, Seeded]]:
    monkeypatch.setenv(KEY_ENV, EVIDENCE_KEY)
    for k, v in {
        "COMPANY": "Example Chat Ltd",
        "SERVICE": "Example Chat",
        "CONTACT_FIRST_NAME": "Test",
        "CONTACT_LAST_NAME": "Contact",
        "CONTACT_EMAIL": "safety@example.org",
    }.items():
        monkeypatch.setenv(f"LIFEGUARD_LE_{k}", v)
    settings = Settings(data_dir=tmp_path / "data", review_break_after_reveals=2)
    seeded = seed(settings, PHOTOS)
    with live_server(settings, wait_ready=False) as lv:
        yield lv, seeded


def login(lv: Live, name: str, password: str = PW) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=lv.base_url, timeout=30)
    page = c.get("/review/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = c.post(
        "/review/login",
        data={"name": name, "password": password, "login_csrf": token.group(1), "next": "/review/"},
    )
    if r.status_code != 303:
        return c, ""
    assert r.headers["location"] == "/review/"
    page = c.get("/review/")
    csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert csrf is not None
    return c, csrf.group(1)


def hx(csrf: str) -> dict[str, str]:
    return {"HX-Request": "true", "X-CSRF-Token": csrf}


def version_of(c: httpx.Client, case_id: int) -> int:
    m = re.search(r'data-version="(\d+)"', c.get(f"/review/cases/{case_id}").text)
    assert m is not None
    return int(m.group(1))


def test_login_required_bad_password_and_csrf(env: tuple[Live, Seeded]) -> None:
    lv, s = env
    anon = httpx.Client(base_url=lv.base_url, timeout=30)
    r = anon.get("/review/")
    assert r.status_code == 303 and r.headers["location"].startswith("/review/login")
    assert anon.get(f"/review/items/{s.report_item}/preview").status_code == 303
    # A login form post without the double-submit token is refused.
    assert anon.post("/review/login", data={"name": "alice", "password": PW}).status_code == 403
    c, csrf = login(lv, "alice", "wrong password here")
    assert csrf == ""
    c, csrf = login(lv, "alice")
    assert csrf
    set_cookie = c.cookies.jar
    cookie = next(ck for ck in set_cookie if ck.name == "lg_review")
    assert cookie.has_nonstandard_attr("HttpOnly")
    # POST without the CSRF token: refused, nothing decided.
    v = version_of(c, s.report_case)
    r = c.post(
        f"/review/cases/{s.report_case}/decide",
        data={"decision": "confirm", "version": str(v)},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 403
    assert version_of(c, s.report_case) == v
    r = c.post(
        f"/review/cases/{s.report_case}/decide",
        data={"decision": "confirm", "version": str(v)},
        headers={"HX-Request": "true", "X-CSRF-Token": "x" * 43},
    )
    assert r.status_code == 403
    # Security headers on pages.
    page = c.get("/review/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    with lv.state.db.read_session() as ss:
        acts = [x.action for x in audit.iter_records(ss, subject_type="reviewer")]
    assert "reviewer.login_failed" in acts and "reviewer.login" in acts


def test_queue_preview_reveal_and_exposure(env: tuple[Live, Seeded]) -> None:
    lv, s = env
    c, csrf = login(lv, "alice")
    q = c.get("/review/").text
    rows = re.findall(r'data-case="(\d+)"', q)
    assert rows[:2] == [str(s.report_case), str(s.match_case)]  # P1 first
    assert "P1 child at risk now" in q
    page = c.get(f"/review/cases/{s.report_case}").text
    assert f"/review/items/{s.report_item}/preview" in page
    assert "/original" not in page
    prev = c.get(f"/review/items/{s.report_item}/preview")
    assert prev.status_code == 200 and prev.headers["content-type"] == "image/jpeg"
    assert prev.content != s.photo_bytes and len(prev.content) < len(s.photo_bytes)
    # The original is refused before a reveal.
    assert c.get(f"/review/items/{s.report_item}/original").status_code == 403
    assert 'Reveals today: <strong id="exposure-count">0</strong>' in page

    r = c.post(
        f"/review/items/{s.report_item}/reveal",
        data={"case_id": str(s.report_case)},
        headers=hx(csrf),
    )
    assert r.status_code == 200
    assert f"/review/items/{s.report_item}/original" in r.text
    assert 'id="exposure-count">1<' in r.text and "autoplay" not in r.text
    orig = c.get(f"/review/items/{s.report_item}/original")
    assert orig.status_code == 200 and orig.content == s.photo_bytes
    with lv.state.db.read_session() as ss:
        recs = list(audit.iter_records(ss, action="review.media_reveal"))
    assert len(recs) == 1
    d = audit.record_to_dict(recs[0])
    assert d["actor"] == "reviewer:alice" and d["subject_id"] == str(s.report_item)
    assert d["details"]["case_id"] == s.report_case
    # Another reviewer has not revealed it: the original stays closed to them.
    b, _ = login(lv, "bob")
    assert b.get(f"/review/items/{s.report_item}/original").status_code == 403
    # A reveal older than the grant window does not open the original either.
    audit.append(
        lv.state.db,
        actor="reviewer:bob",
        action="review.media_reveal",
        subject_type="review_case_item",
        subject_id=s.report_item,
        details={"case_id": s.report_case},
        now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20),
    )
    assert b.get(f"/review/items/{s.report_item}/original").status_code == 403
    audit.append(
        lv.state.db,
        actor="reviewer:bob",
        action="review.media_reveal",
        subject_type="review_case_item",
        subject_id=s.report_item,
        details={"case_id": s.report_case},
        now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
    )
    assert b.get(f"/review/items/{s.report_item}/original").status_code == 200
    # A reveal of an item through the wrong case is refused.
    r = c.post(
        f"/review/items/{s.report_item}/reveal",
        data={"case_id": str(s.match_case)},
        headers=hx(csrf),
    )
    assert r.status_code == 404
    # Second reveal reaches the (test) threshold of 2: the break prompt appears.
    r = c.post(
        f"/review/items/{s.report_item}/reveal",
        data={"case_id": str(s.report_case)},
        headers=hx(csrf),
    )
    assert 'id="exposure-count">2<' in r.text and "Time for a break" in r.text
    assert "consider taking a break" in c.get("/review/").text


def test_decide_conflict_appeal_and_le_button(env: tuple[Live, Seeded]) -> None:
    lv, s = env
    a, acsrf = login(lv, "alice")
    b, bcsrf = login(lv, "bob")
    v = version_of(a, s.match_case)
    assert version_of(b, s.match_case) == v
    r = b.post(
        f"/review/cases/{s.match_case}/decide",
        data={"decision": "confirm", "version": str(v)},
        headers=hx(bcsrf),
    )
    assert r.status_code == 200 and "Decision recorded: Confirm" in r.text
    r = a.post(
        f"/review/cases/{s.match_case}/decide",
        data={"decision": "no_violation", "version": str(v)},
        headers=hx(acsrf),
    )
    assert r.status_code == 409 and r.headers["hx-retarget"] == "#flash"
    assert "Someone else decided" in r.text
    # Without htmx the same conflict is a full page.
    r = a.post(
        f"/review/cases/{s.match_case}/decide",
        data={"decision": "no_violation", "version": str(v), "csrf_token": acsrf},
    )
    assert r.status_code == 409 and "<html" in r.text
    # LE report buttons: seniors only, confirmed cases only.
    assert "Report to NCMEC" not in b.get(f"/review/cases/{s.match_case}").text
    sam, _ = login(lv, "sam")
    assert "Report to NCMEC" in sam.get(f"/review/cases/{s.match_case}").text
    assert "Report to NCMEC" not in sam.get(f"/review/cases/{s.report_case}").text
    r = b.post(f"/review/cases/{s.match_case}/le-report", data={"kind": "ncmec"}, headers=hx(bcsrf))
    assert r.status_code == 403 and "senior" in r.text
    sam_csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', sam.get("/review/").text)
    assert sam_csrf is not None
    r = sam.post(
        f"/review/cases/{s.match_case}/le-report",
        data={"kind": "ncmec"},
        headers=hx(sam_csrf.group(1)),
    )
    # The stand-in bank carries no industry classification: the service says so, precisely.
    assert r.status_code == 422 and "classification" in r.text
    r = sam.post(
        f"/review/cases/{s.match_case}/le-report",
        data={"kind": "ncmec", "classification": "A1"},
        headers=hx(sam_csrf.group(1)),
    )
    assert r.status_code == 200 and "NCMEC report" in r.text, r.text
    assert 'id="le-reports"' in r.text

    # Appeal: bob decided; bob is refused, alice decides it.
    from lifeguard.review.service import ReviewService

    svc = ReviewService(lv.state.db, lv.state.settings)
    svc.appeal(s.match_case, appellant="upload-owner", reason="this is my holiday photo")
    assert f'data-case="{s.match_case}"' in a.get("/review/appeals").text
    v = version_of(b, s.match_case)
    assert "another reviewer must decide" in b.get(f"/review/cases/{s.match_case}").text
    r = b.post(
        f"/review/cases/{s.match_case}/appeal-decision",
        data={"upheld": "yes", "version": str(v)},
        headers=hx(bcsrf),
    )
    assert r.status_code == 403 and "different reviewer" in r.text
    r = a.post(
        f"/review/cases/{s.match_case}/appeal-decision",
        data={"upheld": "no", "version": str(v)},
        headers=hx(acsrf),
    )
    assert r.status_code == 200 and "Appeal rejected" in r.text
    assert svc.get_case(s.match_case).status == "closed"


def test_transparency_page_and_downloads(env: tuple[Live, Seeded]) -> None:
    lv, _ = env
    c, _ = login(lv, "alice")
    r = c.get("/review/transparency")
    assert r.status_code == 200 and "<svg" in r.text
    assert c.get("/review/transparency?start=2026-13-01").status_code == 422
    j = c.get("/review/transparency.json")
    assert j.status_code == 200 and j.json()
    csv_ = c.get("/review/transparency.csv")
    assert csv_.status_code == 200 and csv_.text.startswith("metric,key,value")


def test_video_is_never_autoplayed_and_previews_are_placeholders() -> None:
    from types import SimpleNamespace

    from lifeguard.review.web.media import blurred_preview
    from lifeguard.review.web.routes import templates

    item = SimpleNamespace(id=7, mime="video/mp4", has_media=True)
    html = templates.get_template("_revealed.html").render(
        item=item, case_id=1, exposure=1, break_after=5, needs_break=False, break_now=False
    )
    assert "<video" in html and "controls" in html and "autoplay" not in html
    blurred = templates.get_template("_media_blurred.html").render(
        it=item, case=SimpleNamespace(id=1), csrf="t"
    )
    assert "<video" not in blurred and "/original" not in blurred
    # Video and undecodable images get a neutral placeholder, never the bytes.
    for data, mime in ((b"\x00" * 64, "video/mp4"), (b"not an image", "image/jpeg")):
        out = blurred_preview(data, mime)
        assert out.startswith(b"\xff\xd8") and data not in out


def test_every_review_route_needs_a_session(env: tuple[Live, Seeded]) -> None:
    """Apart from the login form, no /review route answers without a login session: GETs redirect
    to the login page, POSTs are 401."""
    from lifeguard.api.routing import route_table

    lv, _ = env
    anon = httpx.Client(base_url=lv.base_url, timeout=30)
    routes = [
        (m, p)
        for m, p, _, _ in route_table(lv.app.routes)
        if p.startswith("/review") and m != "HEAD"
    ]
    assert len(routes) >= 15
    for method, path in routes:
        if path == "/review/login":
            continue
        url = re.sub(r"\{\w+\}", "1", path)
        r = anon.request(
            method, url, data={"case_id": "1", "version": "1"} if method == "POST" else None
        )
        if method == "GET":
            assert r.status_code == 303 and "/review/login" in r.headers["location"], (path, r)
        else:
            assert r.status_code == 401, (path, r)


def test_reported_text_is_escaped(env: tuple[Live, Seeded]) -> None:
    from lifeguard.review.intake import UserReportIn
    from lifeguard.review.service import ReviewService

    lv, _ = env
    svc = ReviewService(lv.state.db, lv.state.settings)
    evil = '<img src=x onerror="alert(1)">'
    case = svc.submit_report(
        UserReportIn(
            reporter="user-5",
            reason="grooming",
            surface="public",
            reported_account="acct-<b>x</b>",
            description=f"asks to move to another app {evil}",
        )
    )
    c, _ = login(lv, "alice")
    page = c.get(f"/review/cases/{case.id}").text
    assert evil not in page and "acct-<b>" not in page
    assert "&lt;img src=x onerror=" in page
