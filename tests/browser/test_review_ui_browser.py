"""The review web UI in a real browser: Playwright drives Debian's Chromium (/usr/bin/chromium,
installed by ``make sysdeps``; no browser download) against the real service (uvicorn on a free
127.0.0.1 port, SQLite) seeded with a P2 case from a match of a benign photo and a P1 case from a
user report with a benign photo attached.

The tests run in file order and share one server (later ones build on earlier decisions)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from api_live import Live, live_server
from conftest import PHOTOS
from lifeguard.reports import audit
from lifeguard.reports.evidence import KEY_ENV
from lifeguard.review.service import ReviewService
from lifeguard.settings import Settings
from review_web_seed import EVIDENCE_KEY, PW, Seeded, seed

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser

if not CHROMIUM.exists() or not PHOTOS.is_dir():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} or the shared photos are missing (run `make sysdeps`)")
    pytest.skip("Debian chromium not installed (make sysdeps)", allow_module_level=True)


@dataclass
class Env:
    live: Live
    seeded: Seeded
    browser: Browser
    console_errors: list[str]

    @property
    def base(self) -> str:
        return self.live.base_url


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, EVIDENCE_KEY)
    tmp = tmp_path_factory.mktemp("review-ui")
    settings = Settings(data_dir=tmp / "data", review_break_after_reveals=50)
    try:
        seeded = seed(settings, PHOTOS)
        with live_server(settings, wait_ready=False) as lv, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                yield Env(lv, seeded, browser, [])
            finally:
                browser.close()
    finally:
        mp.undo()


def login(env: Env, name: str, password: str = PW) -> Page:
    ctx = env.browser.new_context()
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    page.on("console", lambda m: env.console_errors.append(m.text) if m.type == "error" else None)
    page.goto(env.base + "/review/")
    page.wait_for_url("**/review/login**")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("#login-submit")
    return page


def test_login_bad_password_refused(env: Env) -> None:
    page = login(env, "alice", "not the password")
    err = page.locator("#login-error")
    expect(err).to_contain_text("Wrong name or password")
    assert "/review/login" in page.url
    page.fill("#password", PW)
    page.click("#login-submit")
    page.wait_for_selector("#queue")
    with env.live.state.db.read_session() as s:
        acts = [r.action for r in audit.iter_records(s, subject_type="reviewer")]
    assert acts.count("reviewer.login_failed") == 1 and acts.count("reviewer.login") == 1


def test_queue_p1_first_blurred_reveal_and_blur_again(env: Env) -> None:
    s = env.seeded
    page = login(env, "alice")
    page.wait_for_selector("#queue")
    rows = page.locator("tr.case-row")
    assert rows.nth(0).get_attribute("data-case") == str(s.report_case)
    expect(rows.nth(0)).to_contain_text("P1")
    # Keyboard: j selects the first row, Enter opens it.
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/review/cases/{s.report_case}")

    html = page.content()
    assert "/original" not in html and "autoplay" not in html
    preview = page.locator(f"#slot-{s.report_item} img.preview")
    expect(preview).to_be_visible()
    src = preview.get_attribute("src")
    assert src == f"/review/items/{s.report_item}/preview"
    served = page.request.get(env.base + src)
    assert served.ok and served.headers["content-type"] == "image/jpeg"
    assert served.body() != s.photo_bytes
    # The browser decoded a greyscale image smaller than the original.
    assert (
        page.evaluate(
            "sel => document.querySelector(sel).naturalWidth", f"#slot-{s.report_item} img.preview"
        )
        <= 320
    )
    assert page.request.get(env.base + f"/review/items/{s.report_item}/original").status == 403
    expect(page.locator("#exposure-count")).to_have_text("0")

    # r reveals (an audited POST); the counter goes up.
    page.keyboard.press("r")
    original = page.locator(f"#slot-{s.report_item} img.original")
    expect(original).to_be_visible()
    expect(page.locator("#exposure-count")).to_have_text("1")
    assert (
        page.evaluate(
            "sel => document.querySelector(sel).naturalWidth", f"#slot-{s.report_item} img.original"
        )
        > 320
    )
    with env.live.state.db.read_session() as ss:
        recs = [
            audit.record_to_dict(r) for r in audit.iter_records(ss, action="review.media_reveal")
        ]
    assert len(recs) == 1
    assert recs[0]["actor"] == "reviewer:alice"
    assert recs[0]["subject_id"] == str(s.report_item)
    assert recs[0]["details"]["case_id"] == s.report_case

    # b blurs everything again (the original leaves the page).
    page.keyboard.press("b")
    expect(original).to_have_count(0)
    expect(page.locator(f"#slot-{s.report_item} img.preview")).to_be_visible()
    assert "/original" not in page.content()

    # ? shows the shortcut help, Escape hides it.
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
    # The counter is on every page.
    page.goto(env.base + "/review/")
    expect(page.locator("#exposure-count")).to_have_text("1")


def test_keyboard_decision_and_stale_version_conflict(env: Env) -> None:
    case = env.seeded.match_case
    alice = login(env, "alice")
    bob = login(env, "bob")
    for p in (alice, bob):
        p.wait_for_selector("#queue")
        p.goto(f"{env.base}/review/cases/{case}")
        p.wait_for_selector("#decide-form")
    # Bob confirms with the keyboard.
    bob.keyboard.press("c")
    expect(bob.locator("#case-flash")).to_contain_text("Decision recorded: Confirm")
    expect(bob.locator("#case-status")).to_have_text("decided")
    # Alice still has the old version on screen: her decision is refused with a clear message.
    alice.keyboard.press("n")
    expect(alice.locator("#flash")).to_contain_text("Someone else decided")
    svc = ReviewService(env.live.state.db, env.live.state.settings)
    c = svc.get_case(case)
    assert c.decision == "confirm" and c.decided_by == "bob"


def test_appeal_needs_a_different_reviewer(env: Env) -> None:
    case = env.seeded.match_case
    svc = ReviewService(env.live.state.db, env.live.state.settings)
    svc.appeal(case, appellant="upload-owner", reason="this is my own holiday photo")
    bob = login(env, "bob")
    bob.wait_for_selector("#queue")
    bob.goto(f"{env.base}/review/appeals")
    expect(bob.locator(f'tr[data-case="{case}"]')).to_have_count(1)
    bob.goto(f"{env.base}/review/cases/{case}")
    expect(bob.locator("#appeal-own")).to_be_visible()
    bob.keyboard.press("u")
    expect(bob.locator("#flash")).to_contain_text("different reviewer")
    assert svc.get_case(case).status == "appealed"

    alice = login(env, "alice")
    alice.wait_for_selector("#queue")
    alice.goto(f"{env.base}/review/cases/{case}")
    expect(alice.locator("#appeal-own")).to_have_count(0)
    alice.keyboard.press("x")
    expect(alice.locator("#case-flash")).to_contain_text("Appeal rejected")
    assert svc.get_case(case).status == "closed"


def test_transparency_page_renders(env: Env) -> None:
    page = login(env, "sam")
    page.wait_for_selector("#queue")
    page.goto(env.base + "/review/transparency")
    expect(page.locator("svg.chart").first).to_be_visible()
    csv_href = page.locator("#dl-csv").get_attribute("href")
    assert csv_href is not None
    r = page.request.get(env.base + csv_href)
    assert r.ok and r.text().startswith("metric,key,value")
    # No script or CSP errors on any page the tests visited.
    assert not [e for e in env.console_errors if "Content Security Policy" in e], env.console_errors
