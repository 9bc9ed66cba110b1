"""Review backend (issue 5): intake, merging, triage order, decisions and their effects, appeals,
optimistic locking under a race, law-enforcement reports, transparency figures. Every test runs on
SQLite and PostgreSQL (the ``db`` fixture). Media are benign stand-in photos."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from conftest import PHOTOS
from lifeguard.actions.events import record_match
from lifeguard.actions.models import WebhookDelivery
from lifeguard.actions.rules import create_rule
from lifeguard.banks import Banks
from lifeguard.errors import Conflict, Forbidden, NotFound
from lifeguard.matching import Matcher
from lifeguard.reports.audit import verify
from lifeguard.reports.le_models import LeSubmission
from lifeguard.reports.lereports import NotConfirmed
from lifeguard.reports.models import AuditRecord, EvidenceItem
from lifeguard.reports.standin import NcaStandin, NcmecStandin, nca_validate, validate
from lifeguard.reports.transparency import transparency_report
from lifeguard.review.le import LeSettings
from lifeguard.review.models import ReviewCase, ReviewDecision, ReviewLeReport
from lifeguard.review.roles import Actor, Role
from lifeguard.review.service import ContentRef, ReviewError, ReviewService, UserReportIn
from lifeguard.settings import Settings
from lifeguard.signals.hasher import hash_bytes
from lifeguard.store.db import Database

ALICE = Actor("alice", Role.REVIEWER)
BOB = Actor("bob", Role.REVIEWER)
SENIOR = Actor("sam", Role.SENIOR)
ADMIN = Actor("ada", Role.ADMIN)
LE = LeSettings(
    company="Example Chat Ltd",
    service="Example Chat",
    contact_first_name="Trust",
    contact_last_name="Safety",
    contact_email="safety@example.org",
)


@pytest.fixture(autouse=True)
def _evidence_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFEGUARD_EVIDENCE_KEY", base64.b64encode(b"r" * 32).decode())


@pytest.fixture
def svc(db: Database, settings: Settings) -> ReviewService:
    return ReviewService(db, settings, le=LE)


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return sorted(p for p in PHOTOS.rglob("*.jpg"))[:4]


def report(**kw: Any) -> UserReportIn:
    base: dict[str, Any] = {"reporter": "u-1", "reason": "csam", "surface": "public"}
    base.update(kw)
    return UserReportIn(**base)


def match_event(db: Database, banks: Banks, bank: str, content_id: str, pdq: str) -> list[int]:
    """Record a match of ``pdq`` against ``bank`` the way the API does (through a Matcher)."""
    from lifeguard.matching.results import Match, MatchResult

    b = banks.get_bank(bank)
    e = banks.add_entry(bank, "pdq", pdq, external_id="x-1").entry
    m = Match(
        bank=b.name, bank_id=b.id, bank_kind="block", entry_id=e.id, external_id="x-1",
        signal_type="pdq", value=pdq, distance=0, variant="plain", query_variant="original",
        listed_variant="plain", categories=(),
    )  # fmt: skip
    return record_match(db, MatchResult(matches=[m]), content_id, None)


# ------------------------------------------------------------------------------------ intake


def test_intake_validation() -> None:
    with pytest.raises(ReviewError, match="reason 'spam'"):
        report(reason="spam")
    with pytest.raises(ReviewError, match="surface"):
        report(surface="dm")
    with pytest.raises(ReviewError, match="reporter is required"):
        report(reporter="  ")
    with pytest.raises(ReviewError, match="md5"):
        ContentRef("c1", md5="xyz")
    with pytest.raises(ReviewError, match="control"):
        report(reported_account="a\x00b")
    assert report(reason="sextortion").priority == 1
    assert report(reason="grooming", child_at_risk_now=True).priority == 1
    assert report(reason="take_it_down").priority == 2
    assert report(reason="grooming").priority == 3


def test_report_needs_something(svc: ReviewService) -> None:
    with pytest.raises(ReviewError, match="content references, media or a reported account"):
        svc.submit_report(report())


def test_report_media_goes_to_vault_only_and_is_deleted_on_no_violation(
    svc: ReviewService, db: Database, photos: list[Path]
) -> None:
    data = photos[0].read_bytes()
    case = svc.submit_report(report(reported_account="acc-9"), media=[(photos[0].name, data)])
    (item,) = case.items
    assert item.kind == "media" and item.has_media and item.mime == "image/jpeg"
    assert item.hashes["pdq"] == hash_bytes(data, "x").pdq
    with db.read_session() as s:
        (ev,) = s.execute(select(EvidenceItem)).scalars()
        assert ev.case_id == f"review-case-{case.id}"
    blob = svc.vault.path_for(ev.id)
    assert blob.exists() and data not in blob.read_bytes()  # encrypted at rest
    got, mime = svc.item_media(item.id, actor=ALICE)
    assert got == data and mime == "image/jpeg"
    svc.decide(case.id, ALICE, "no_violation", expected_version=case.version)
    assert not blob.exists()
    with db.read_session() as s:
        assert s.execute(select(EvidenceItem)).first() is None
        actions = [r.action for r in s.execute(select(AuditRecord)).scalars()]
    assert "evidence.delete" in actions and "evidence.reveal" in actions
    with pytest.raises(NotFound, match="no media"):
        svc.item_media(item.id)
    assert svc.get_case(case.id).items[0].media_deleted


# ------------------------------------------------------------------------------------ cases


def test_merge_and_priority(svc: ReviewService, db: Database, settings: Settings) -> None:
    banks = Banks(db)
    banks.create_bank("NCMEC_LIST")
    pdq = "f" * 64
    a = svc.submit_report(report(reason="other_child_safety", content=[ContentRef("post-7")]))
    assert a.priority == 3
    match_event(db, banks, "NCMEC_LIST", "post-7", pdq)
    assert svc.ingest_match_events() == 1
    assert svc.ingest_match_events() == 0  # idempotent
    merged = svc.get_case(a.id)
    assert merged.item_count == 2 and merged.priority == 2 and merged.category == "csam"
    assert {i.source for i in merged.items} == {"report", "match"}
    assert merged.items[1].match is not None and merged.items[1].match["bank"] == "NCMEC_LIST"
    # same reported account -> same case; sextortion raises it to priority 1 and pulls the due date in
    c = svc.submit_report(
        report(reason="sextortion", reported_account="acc-1", content=[ContentRef("dm-1")])
    )
    assert c.priority == 1
    c2 = svc.submit_report(report(reason="csam", reported_account="acc-1"))
    assert c2.id == c.id and c2.item_count == 2 and c2.priority == 1
    # same hash (from another content id) -> same case
    d = svc.submit_report(report(content=[ContentRef("post-8", pdq=pdq)]))
    assert d.id == a.id
    due = merged.first_review_due - merged.created_at
    assert abs(due - dt.timedelta(hours=settings.review_target_p2_hours)) < dt.timedelta(seconds=5)
    # a decided case takes no more items: a new case starts
    svc.decide(a.id, ALICE, "no_violation", expected_version=svc.get_case(a.id).version)
    e = svc.submit_report(report(content=[ContentRef("post-7")]))
    assert e.id != a.id


def test_queue_order_overdue_and_escalation_visibility(db: Database, settings: Settings) -> None:
    svc = ReviewService(db, settings.model_copy(update={"review_target_p3_hours": 1e-7}))
    p3 = svc.submit_report(report(reason="grooming", reported_account="g1"))
    p2 = svc.submit_report(report(reason="csam", reported_account="c1"))
    p1 = svc.submit_report(report(reason="grooming", reported_account="g2", child_at_risk_now=True))
    p2b = svc.submit_report(report(reason="take_it_down", reported_account="t1"))
    q = svc.queue(ALICE)
    assert [c.id for c in q] == [p1.id, p2.id, p2b.id, p3.id]
    assert [c.priority for c in q] == [1, 2, 2, 3]
    assert {c.id for c in q if c.overdue} == {p3.id}
    svc.decide(p3.id, ALICE, "escalate", expected_version=p3.version)
    assert p3.id not in [c.id for c in svc.queue(ALICE)]  # reviewers do not see escalated cases
    assert p3.id in [c.id for c in svc.queue(SENIOR)]
    with pytest.raises(Forbidden):
        svc.decide(p3.id, BOB, "confirm", expected_version=p3.version + 1)
    v = svc.decide(p3.id, SENIOR, "no_violation", expected_version=p3.version + 1)
    assert v.status == "decided" and not v.overdue
    assert [c.id for c in svc.queue(ALICE, status="decided")] == [p3.id]
    a = svc.assign(p2.id, BOB, expected_version=p2.version)
    assert a.status == "assigned" and a.assigned_to == "bob" and a.first_reviewed_at is not None
    with pytest.raises(Conflict):
        svc.assign(p2.id, ALICE, expected_version=p2.version)
    with pytest.raises(ReviewError):
        svc.decide(p2.id, BOB, "delete", expected_version=a.version)


def test_confirm_fills_block_bank_and_fires_rules(
    svc: ReviewService, db: Database, settings: Settings
) -> None:
    banks = Banks(db)
    banks.create_bank(settings.review_confirmed_bank)
    rule = create_rule(db, settings.review_confirmed_bank, "https://platform.example/hook")
    pdq = "a" * 64
    md5 = "b" * 32
    case = svc.submit_report(report(content=[ContentRef("post-1", md5=md5, pdq=pdq)]))
    v = svc.decide(case.id, ALICE, "confirm", expected_version=case.version, note="clear")
    assert v.status == "decided" and v.decision == "confirm" and v.decided_by == "alice"
    effects = v.decisions[-1]["effects"]
    assert len(effects["entries_added"]) == 2 and len(effects["events"]) == 2
    listed = {
        (e.signal_type, e.value) for e in banks.list_entries(settings.review_confirmed_bank).items
    }
    assert listed == {("pdq", pdq), ("md5", md5)}
    with db.read_session() as s:
        dels = list(s.execute(select(WebhookDelivery)).scalars())
    assert {d.rule_id for d in dels} == {rule.id} and len(dels) == 2
    # review's own events make no new case
    assert svc.ingest_match_events() == 0
    assert len(svc.queue(ADMIN, status="all")) == 1
    assert verify(db).ok


def test_false_positive_allow_lists_and_suppresses(
    svc: ReviewService, db: Database, settings: Settings, photos: list[Path]
) -> None:
    banks = Banks(db)
    banks.create_bank("KNOWN")
    h = hash_bytes(photos[1].read_bytes(), "p", settings, query_variants=True)
    assert h.pdq
    banks.add_entry("KNOWN", "pdq", h.pdq)
    matcher = Matcher(db, settings)
    matcher.load(use_snapshot=False)
    r = matcher.match_media(h)
    assert r.matched
    record_match(db, r, "img-1", h)
    assert svc.ingest_match_events() >= 1
    (case,) = svc.queue(ALICE)
    svc.decide(case.id, ALICE, "false_positive", expected_version=case.version)
    allow = banks.get_bank(settings.review_allow_bank)
    assert allow.kind == "allow"
    matcher.sync(force=True)
    r2 = matcher.match_media(h)
    assert not r2.matched and r2.suppressed


def test_appeal_by_other_reviewer(svc: ReviewService, db: Database, settings: Settings) -> None:
    case = svc.submit_report(report(content=[ContentRef("p", md5="c" * 32)]))
    v = svc.decide(case.id, ALICE, "confirm", expected_version=case.version)
    with pytest.raises(Conflict):
        svc.decide_appeal(case.id, BOB, upheld=False, expected_version=v.version)
    v = svc.appeal(case.id, appellant="acc-2", reason="that is my holiday photo")
    assert v.status == "appealed"
    with pytest.raises(Forbidden, match="different reviewer"):
        svc.decide_appeal(case.id, ALICE, upheld=True, expected_version=v.version)
    v = svc.decide_appeal(case.id, BOB, upheld=True, expected_version=v.version, note="benign")
    assert v.status == "closed" and v.decision == "no_violation"
    assert v.appeals[0]["upheld"] is True and v.appeals[0]["decided_by"] == "bob"
    banks = Banks(db)
    (entry,) = banks.list_entries(settings.review_confirmed_bank, status="removed").items
    assert entry.value == "c" * 32
    with pytest.raises(Conflict):
        svc.appeal(case.id, appellant="acc-2", reason="again")
    # a false positive appealed by the reporter and upheld reopens the case for senior review
    c2 = svc.submit_report(report(content=[ContentRef("q", md5="d" * 32)]))
    v2 = svc.decide(c2.id, ALICE, "false_positive", expected_version=c2.version)
    v2 = svc.appeal(c2.id, appellant="u-1", reason="it is abuse")
    v2 = svc.decide_appeal(c2.id, SENIOR, upheld=True, expected_version=v2.version)
    assert v2.status == "open" and v2.escalated and v2.decision is None
    with db.read_session() as s:
        actions = {r.action for r in s.execute(select(AuditRecord)).scalars()}
    assert {"review.decide", "review.appeal", "review.appeal_decide", "review.effects"} <= actions


def test_two_reviewers_race_one_wins(db: Database, settings: Settings) -> None:
    svc = ReviewService(db, settings)
    case = svc.submit_report(report(content=[ContentRef("race", md5="e" * 32)]))
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def go(actor: Actor, decision: str) -> None:
        other = ReviewService(Database.open(settings, run_migrations=False), settings)
        barrier.wait()
        try:
            results[actor.id] = other.decide(
                case.id, actor, decision, expected_version=case.version
            )
        except Exception as e:
            results[actor.id] = e
        finally:
            other.db.dispose()

    threads = [
        threading.Thread(target=go, args=(ALICE, "confirm")),
        threading.Thread(target=go, args=(BOB, "no_violation")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    wins = [r for r in results.values() if not isinstance(r, Exception)]
    losses = [r for r in results.values() if isinstance(r, Exception)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert isinstance(losses[0], Conflict)
    with db.read_session() as s:
        (row,) = s.execute(select(ReviewDecision)).scalars()
        c = s.get(ReviewCase, case.id)
        assert c is not None and c.version == case.version + 1 and c.decided_by == row.actor


def test_stale_version_after_merge(svc: ReviewService) -> None:
    case = svc.submit_report(report(reported_account="m1"))
    svc.submit_report(report(reported_account="m1", reason="grooming"))
    with pytest.raises(Conflict, match="version"):
        svc.decide(case.id, ALICE, "confirm", expected_version=case.version)


# ------------------------------------------------------------------------------------ LE reports


@pytest.fixture
def confirmed(svc: ReviewService, photos: list[Path]) -> int:
    case = svc.submit_report(
        report(reported_account="offender-1", child_at_risk_now=True, reason="sextortion"),
        media=[(photos[2].name, photos[2].read_bytes())],
    )
    svc.decide(case.id, ALICE, "confirm", expected_version=case.version)
    return case.id


def test_le_report_refused_for_reviewer_and_unconfirmed(svc: ReviewService, confirmed: int) -> None:
    with pytest.raises(Forbidden):
        svc.le_report(confirmed, BOB, "ncmec", classification="B2")
    open_case = svc.submit_report(report(reported_account="other"))
    with pytest.raises(NotConfirmed):
        svc.le_report(open_case.id, SENIOR, "ncmec", classification="B2")
    with pytest.raises(NotConfirmed, match="confirming reviewer"):
        svc.le_report(confirmed, Actor("alice", Role.SENIOR), "ncmec", classification="B2")
    with pytest.raises(ReviewError):
        svc.le_report(confirmed, SENIOR, "fbi")


def test_le_report_built_and_submitted(svc: ReviewService, db: Database, confirmed: int) -> None:
    built = svc.le_report(confirmed, SENIOR, "ncmec", classification="B2")
    assert built.status == "built"
    validate(ET.fromstring(built.document))  # the stand-in's structural check
    # a sextortion case carries NCMEC's sextortion report annotation
    ann = ET.fromstring(built.document).find("incidentSummary/reportAnnotations/sextortion")
    assert ann is not None and ann.text == "true"
    nc, na = NcmecStandin(), NcaStandin(token="tok")
    with nc, na:
        svc.le = LE.model_copy(
            update={
                "ncmec_base_url": nc.base_url, "ncmec_username": "esp-test",
                "ncmec_password": "secret", "nca_base_url": na.url, "nca_token": "tok",
            }
        )  # fmt: skip
        nca = svc.le_report(confirmed, ADMIN, "nca", classification="B2")
        assert nca.status == "submitted" and nca.priority == 1 and nca.reference
        assert nca_validate(json.loads(nca.document)) == []
        assert len(na.received) == 1
        sub = svc.le_report(confirmed, SENIOR, "ncmec", classification="B2")
        assert sub.status == "submitted" and sub.reference in nc.reports
        rep = nc.reports[sub.reference]
        assert rep.state == "finished" and len(rep.files) == 1
        # everything now reported to NCMEC: the NCA client treats it as reported (not re-sent)
        again = svc.le_report(confirmed, ADMIN, "nca", classification="B2")
        assert again.status == "skipped" and len(na.received) == 1
    with db.read_session() as s:
        kinds = [(r.target, r.kind) for r in s.execute(select(LeSubmission)).scalars()]
        assert ("ncmec", "built") in kinds and ("ncmec", "submit") in kinds
        assert ("nca", "submit") in kinds
        assert len(list(s.execute(select(ReviewLeReport)).scalars())) == 4
    kinds_made = [r["kind"] for r in svc.get_case(confirmed).le_reports]
    assert kinds_made == ["ncmec", "nca", "ncmec", "nca"]


# ------------------------------------------------------------------------------------ transparency


def _backdate(db: Database, case_id: int, created: dt.datetime, decided: dt.datetime) -> None:
    with db.session() as s:
        s.execute(update(ReviewCase).where(ReviewCase.id == case_id).values(created_at=created))
        s.execute(
            update(ReviewDecision).where(ReviewDecision.case_id == case_id).values(time=decided)
        )


def test_transparency_figures(svc: ReviewService, db: Database) -> None:
    t0 = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    plan = [
        # (reason, surface, decision, minutes to action)
        ("csam", "public", "confirm", 30),
        ("csam", "private_message", "false_positive", 90),
        ("grooming", "private_message", "no_violation", 10),
        ("sextortion", "e2ee_verified", "confirm", 60),
    ]
    ids = []
    for n, (reason, surface, decision, minutes) in enumerate(plan):
        c = svc.submit_report(
            report(
                reason=reason,
                surface=surface,
                reported_account=f"t{n}",
                content=[ContentRef(f"x{n}")],
            )
        )
        svc.decide(c.id, ALICE, decision, expected_version=c.version)
        created = t0 + dt.timedelta(hours=n)
        _backdate(db, c.id, created, created + dt.timedelta(minutes=minutes))
        ids.append(c.id)
    v = svc.appeal(ids[0], appellant="t0", reason="no")
    svc.decide_appeal(ids[0], BOB, upheld=False, expected_version=v.version)
    now = dt.datetime.now(dt.UTC)
    rep = transparency_report(db, t0, now + dt.timedelta(days=1))
    d = rep.to_dict()
    assert d["detections"]["by_source"] == {"match": 0, "report": 4, "signal": 0}
    assert d["detections"]["by_surface"] == {
        "public": 1, "private_message": 2, "e2ee_verified": 1, "unknown": 0,
    }  # fmt: skip
    assert d["detections"]["by_category"]["csam"] == 2
    assert d["decisions"] == {"confirm": 2, "false_positive": 1, "no_violation": 1}
    assert rep.false_positive_rate == pytest.approx(1 / 4)
    assert rep.median_time_to_action_s == pytest.approx(45 * 60)  # median of 10, 30, 60, 90 min
    assert d["appeals"] == {"decided": 1, "upheld": 0, "rejected": 1, "upheld_rate": 0.0}
    # a period before the decisions sees none of them
    early = transparency_report(db, t0 - dt.timedelta(days=2), t0)
    assert early.decisions == {"confirm": 0, "false_positive": 0, "no_violation": 0}
    assert early.false_positive_rate is None
    csv_text = rep.to_csv()
    assert "decisions,false_positive,1" in csv_text.splitlines()
    with pytest.raises(Exception, match="empty"):
        transparency_report(db, t0, t0)


def test_signal_items(svc: ReviewService) -> None:
    c = svc.submit_signal(category="grooming", content_ref="chat-9", account="g-9",
                          details={"score": 97})  # fmt: skip
    assert c.items[0].source == "signal" and c.priority == 3


def test_cli(
    svc: ReviewService, db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from lifeguard.cli import app
    from lifeguard.review import cli_commands

    monkeypatch.setattr(cli_commands, "get_settings", lambda: settings)
    banks = Banks(db)
    banks.create_bank("CLI_BANK")
    match_event(db, banks, "CLI_BANK", "cli-1", "9" * 64)
    runner = CliRunner()
    r = runner.invoke(app, ["case", "ingest"])
    assert r.exit_code == 0 and "1 new case item" in r.output, r.output
    r = runner.invoke(app, ["case", "list", "--json"])
    (row,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert row["priority"] == 2 and row["item_count"] == 1
    r = runner.invoke(app, ["case", "show", str(row["id"])])
    assert r.exit_code == 0 and json.loads(r.stdout)["items"][0]["match"]["bank"] == "CLI_BANK"
    args = ["case", "decide", str(row["id"]), "confirm", "--version", str(row["version"])]
    r = runner.invoke(app, [*args, "--as", "carol"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args, "--as", "dave"])
    assert r.exit_code == 2 and "conflict" in r.output
    le = ["case", "le-report", str(row["id"]), "nca", "--classification", "B1"]
    r = runner.invoke(app, [*le, "--as", "erin", "--role", "reviewer"])
    assert r.exit_code == 2 and "forbidden" in r.output
    monkeypatch.setenv("LIFEGUARD_LE_COMPANY", "Example Chat Ltd")
    monkeypatch.setenv("LIFEGUARD_LE_SERVICE", "Example Chat")
    monkeypatch.setenv("LIFEGUARD_LE_CONTACT_FIRST_NAME", "Trust")
    monkeypatch.setenv("LIFEGUARD_LE_CONTACT_LAST_NAME", "Safety")
    monkeypatch.setenv("LIFEGUARD_LE_CONTACT_EMAIL", "safety@example.org")
    r = runner.invoke(app, [*le, "--as", "carol"])  # the confirming reviewer: four eyes
    assert r.exit_code == 2 and "le_report_not_confirmed" in r.output
    r = runner.invoke(app, [*le, "--as", "sam"])
    assert r.exit_code == 0 and "nca report for case" in r.output and "built" in r.output
    today = dt.datetime.now(dt.UTC).date().isoformat()
    r = runner.invoke(app, ["transparency", "--from", today, "--to", today, "--format", "csv"])
    assert r.exit_code == 0 and "decisions,confirm,1" in r.stdout.splitlines()
    r = runner.invoke(app, ["transparency", "--from", today, "--to", today])
    assert json.loads(r.stdout)["detections"]["by_source"]["match"] == 1
