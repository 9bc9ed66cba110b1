"""Contact rules on metadata: rules file validation, the engine's decisions, snapshots."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from lifeguard.safety.events import InvalidEvent, parse_event
from lifeguard.safety.rules import (
    DEFAULT_RULES_FILE,
    Engine,
    RulesError,
    SafetyEngineService,
    SnapshotError,
    load_rules,
    parse_duration,
    parse_rules,
)

H = 3600.0


def ev(type: str, ts: float, actor: str, target: str = "", band: str = "") -> Any:
    if type == "account":
        return parse_event({"type": "account", "ts": ts, "account": actor, "age_band": band})
    return parse_event({"type": type, "ts": ts, "actor": actor, "target": target})


def engine_with(*accounts: tuple[str, str]) -> Engine:
    e = Engine(load_rules())
    for acc, band in accounts:
        e.apply(ev("account", 0, acc, band=band))
    return e


# ------------------------------------------------------------------------------ rules files
def test_default_rules_load_and_are_documented() -> None:
    rs = load_rules()
    assert "f1-no-unconnected-messages" in rs.ids
    doc = (Path(__file__).resolve().parents[1] / "docs" / "contact-rules.md").read_text()
    for rid in rs.ids:
        assert rid in doc, rid
    assert DEFAULT_RULES_FILE.exists()


def _err(text: str) -> RulesError:
    with pytest.raises(RulesError) as ei:
        parse_rules(textwrap.dedent(text), "r.toml")
    return ei.value


def test_syntax_error_names_the_line() -> None:
    e = _err("version = 1\n[[rule]]\nid = \n")
    assert e.problems[0][0] == 3 and "r.toml:3" in e.message


def test_validation_errors_name_line_and_field() -> None:
    e = _err(
        """\
        version = 1

        [[rule]]
        id = "ok"
        kind = "deny_contact"
        sender = "adult"
        recipient = "child"

        [[rule]]
        id = "bad"
        kind = "rate"
        sender = "adult"
        recipient = ["child", "toddler"]
        window = "24 hours"
        max_recipients = 5
        action = "ban"
        """
    )
    by_field = {f: (ln, msg) for ln, f, msg in e.problems}
    assert by_field["rule.1.recipient"][0] == 13 and "toddler" in by_field["rule.1.recipient"][1]
    assert by_field["rule.1.window"][0] == 14 and "not a duration" in by_field["rule.1.window"][1]
    assert by_field["rule.1.action"][0] == 16
    assert "r.toml:13: rule.1.recipient" in e.message


def test_unknown_field_missing_field_and_duplicates() -> None:
    e = _err(
        """\
        version = 1
        [[rule]]
        id = "a"
        kind = "risk"
        reporter = "child"
        points = { block = 10 }
        thresholds = [{ at = 20, action = "flag" }, { at = 10, action = "deny" }]
        colour = "red"
        """
    )
    fields = {f for _, f, _ in e.problems}
    assert "rule.0.window" in fields  # missing
    assert "rule.0.colour" in fields  # unknown
    assert any("increasing" in m for _, _, m in e.problems)
    e = _err(
        'version = 1\n[[rule]]\nid="a"\nkind="deny_contact"\n[[rule]]\nid="a"\nkind="deny_contact"\n'
    )
    assert any("duplicate rule id" in m for _, _, m in e.problems)
    e = _err("version = 2\n")
    assert e.problems[0][:2] == (1, "version")
    e = _err('version = 1\n[[rule]]\nid = "x"\nkind = "teleport"\n')
    assert e.problems[0][0] == 2
    with pytest.raises(RulesError, match="cannot read"):
        load_rules("/nonexistent/rules.toml")


def test_durations() -> None:
    assert parse_duration("24h") == 86400 and parse_duration("90s") == 90
    assert parse_duration("2w") == 14 * 86400 and parse_duration(30) == 30
    for bad in ("0s", "-1h", "1y", True, "h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# ------------------------------------------------------------------------------------ events
def test_event_validation() -> None:
    assert ev("account", 1, "a", band="u13").age_band == "u13"
    assert (
        parse_event({"type": "block", "ts": "2026-01-01T00:00:00Z", "actor": "a", "target": "b"}).ts
        == 1767225600
    )
    for bad, msg in (
        ({"type": "hug", "ts": 1, "actor": "a", "target": "b"}, "type"),
        ({"type": "message", "ts": -1, "actor": "a", "target": "b"}, "ts"),
        (
            {"type": "message", "ts": "2026-01-01T00:00:00", "actor": "a", "target": "b"},
            "time zone",
        ),
        ({"type": "message", "ts": 1, "actor": "a", "target": "a"}, "same account"),
        ({"type": "message", "ts": 1, "actor": "", "target": "b"}, "actor"),
        ({"type": "message", "ts": 1, "actor": "a", "target": "b", "text": "hi"}, "unknown field"),
        ({"type": "account", "ts": 1, "account": "a", "age_band": "12"}, "age band"),
        ({"type": "block", "ts": time.time() + 2 * 86400, "actor": "a", "target": "b"}, "future"),
    ):
        with pytest.raises(InvalidEvent, match=msg):
            parse_event(bad, 3)
    with pytest.raises(InvalidEvent, match=r"^events\[3\]"):
        parse_event({"type": "hug"}, 3)


# ---------------------------------------------------------------------------------- decisions
def test_f1_adult_cannot_message_unconnected_child() -> None:
    e = engine_with(("adult", "adult"), ("kid", "13-15"), ("teen", "16-17"), ("grown", "adult"))
    d = e.may_contact("adult", "kid", 10)
    assert (
        not d.allowed and d.action == "deny" and d.reasons[0].rule == "f1-no-unconnected-messages"
    )
    assert e.may_contact("adult", "grown", 10).allowed  # adult to adult: no rule
    assert e.may_contact("kid", "adult", 10).allowed  # the child may write first
    assert not e.may_contact("teen", "kid", 10).allowed  # F1: any account outside the connections
    assert e.may_contact("adult", "kid", 10, "contact_request").allowed  # requests are rate-limited
    assert not e.may_contact("stranger", "kid", 10).allowed  # never-seen account: unknown band
    e.apply(ev("connect", 11, "kid", "adult"))
    assert e.may_contact("adult", "kid", 12).allowed
    e.apply(ev("disconnect", 13, "adult", "kid"))
    assert not e.may_contact("adult", "kid", 14).allowed
    with pytest.raises(ValueError, match="kind"):
        e.may_contact("adult", "kid", 14, "poke")


def test_blocks_deny_both_ways_and_end_connections() -> None:
    e = engine_with(("a", "adult"), ("b", "adult"))
    e.apply(ev("connect", 1, "a", "b"))
    e.apply(ev("block", 2, "b", "a"))
    assert not e.connected("a", "b")
    d = e.may_contact("a", "b", 3)
    assert d.action == "deny" and d.reasons[0].detail == "the recipient blocked the sender"
    assert not e.may_contact("b", "a", 3).allowed
    e.apply(ev("unblock", 4, "b", "a"))
    assert e.may_contact("a", "b", 5).allowed


def test_rate_rule_flags_then_restricts_and_expires() -> None:
    kids = [(f"k{i}", "u13") for i in range(30)]
    e = engine_with(("adult", "adult"), ("friend", "13-15"), *kids)
    e.apply(ev("connect", 0, "adult", "friend"))
    found = []
    for i in range(5):  # up to the limit: nothing
        found += e.apply(ev("contact_request", 100 + i, "adult", f"k{i}"))
    # repeating the same recipients does not count twice
    for i in range(5):
        found += e.apply(ev("contact_request", 200 + i, "adult", f"k{i}"))
    assert found == [] and e.may_contact("adult", "k29", 300, "contact_request").action == "allow"
    found = e.apply(ev("contact_request", 300, "adult", "k5"))
    assert [(f.rule, f.account, f.action) for f in found] == [
        ("adult-requests-to-many-children", "adult", "flag")
    ]
    d = e.may_contact("adult", "k29", 301, "contact_request")
    assert d.allowed and d.action == "flag"
    assert e.may_contact("adult", "friend", 301).action == "allow"  # connected: not governed
    for i in range(6, 21):
        found = e.apply(ev("message", 400 + i, "adult", f"k{i}"))
        assert [f.action for f in found] == (["restrict"] if i == 20 else [])
    d = e.may_contact("adult", "k29", 500, "contact_request")
    assert not d.allowed and d.action == "restrict" and len(d.reasons) == 2
    # the flag holds 24 h after the last contact over the limit, the restriction 72 h
    assert e.may_contact("adult", "k29", 420 + 25 * H, "contact_request").action == "restrict"
    assert e.may_contact("adult", "k29", 420 + 73 * H, "contact_request").action == "allow"


def test_rate_window_slides() -> None:
    kids = [(f"k{i}", "16-17") for i in range(10)]
    e = engine_with(("adult", "adult"), *kids)
    for i in range(5):
        e.apply(ev("contact_request", i * H, "adult", f"k{i}"))
    # k0 was contacted 24.5 h before: out of the window, so 5 distinct in the window, no flag
    assert e.apply(ev("contact_request", 24.5 * H, "adult", "k5")) == []
    assert e.apply(ev("contact_request", 24.5 * H + 1, "adult", "k6")) != []


def test_late_events_and_compaction() -> None:
    kids = [(f"k{i}", "u13") for i in range(10)]
    e = engine_with(("adult", "adult"), *kids)
    for i in range(5):
        e.apply(ev("contact_request", 10 * H + i, "adult", f"k{i}"))
    e.apply(ev("contact_request", 1 * H, "adult", "k0"))  # late: k0 keeps its later time
    assert e.rate_state[0]["adult"].recent["k0"] == 10 * H
    e.apply(ev("report", 5 * H, "k1", "adult"))
    e.apply(ev("report", 2 * H, "k1", "adult"))  # late duplicate report: same points, later time
    assert e.risk("adult", 6 * H) == {"child-blocks-and-reports": 25}
    assert e.compact(11 * H) == 0  # everything still in its window
    assert e.compact(5 * H + 30 * 86400) == 3  # two rate counters and the risk are stale
    assert e.rate_state[0] == {} and e.risk_state[0] == {}
    assert e.may_contact("adult", "k9", 5 * H + 30 * 86400, "contact_request").allowed


def test_child_blocks_and_reports_raise_risk() -> None:
    e = engine_with(
        ("adult", "adult"), ("k1", "u13"), ("k2", "13-15"), ("k3", "16-17"), ("a2", "adult")
    )
    e.apply(ev("connect", 0, "adult", "k3"))
    assert e.apply(ev("report", 10, "a2", "adult")) == []  # adults' reports do not count here
    f = e.apply(ev("report", 20, "k1", "adult"))
    assert [(x.action, x.account) for x in f] == [("flag", "adult")]
    assert e.apply(ev("report", 21, "k1", "adult")) == []  # the same child again: counted once
    assert e.risk("adult", 22) == {"child-blocks-and-reports": 25}
    f = e.apply(ev("block", 30, "k2", "adult")) + e.apply(ev("report", 31, "k2", "adult"))
    assert [x.action for x in f] == ["require_review"]
    d = e.may_contact("adult", "k3", 40)  # connected, but the risk rule covers all children
    assert not d.allowed and d.action == "require_review"
    assert e.may_contact("adult", "a2", 40).allowed  # risk applies to contacts with children
    f = e.apply(ev("report", 50, "k3", "adult"))
    assert [x.action for x in f] == ["restrict"]
    # 30 days later the points have expired
    assert e.may_contact("adult", "k3", 51 + 30 * 86400).allowed
    assert e.risk("adult", 51 + 30 * 86400) == {}
    # asking about a later time changed nothing: now is still restricted
    assert e.may_contact("adult", "k3", 60).action == "restrict"
    assert e.risk("adult", 60) == {"child-blocks-and-reports": 85}  # 25 + 10 + 25 + 25


def test_custom_rules_connected_and_actions() -> None:
    rs = parse_rules(
        textwrap.dedent(
            """\
            version = 1
            [[rule]]
            id = "review-teen-requests"
            kind = "deny_contact"
            sender = "adult"
            recipient = ["13-15", "16-17"]
            events = ["contact_request"]
            action = "require_review"
            [[rule]]
            id = "note-connected"
            kind = "deny_contact"
            sender = "any"
            recipient = "u13"
            connected = true
            action = "flag"
            """
        )
    )
    e = Engine(rs)
    for acc, band in (("a", "adult"), ("t", "16-17"), ("c", "u13")):
        e.apply(ev("account", 0, acc, band=band))
    d = e.may_contact("a", "t", 1, "contact_request")
    assert not d.allowed and d.action == "require_review"
    assert e.may_contact("a", "t", 1, "message").allowed
    assert e.may_contact("a", "c", 1).action == "allow"
    e.apply(ev("connect", 2, "a", "c"))
    assert e.may_contact("a", "c", 3).action == "flag" and e.may_contact("a", "c", 3).allowed


# ---------------------------------------------------------------------------------- snapshots
def test_snapshot_round_trip_resumes(tmp_path: Path) -> None:
    path = tmp_path / "safety" / "state.json"
    svc = SafetyEngineService(load_rules(), path, snapshot_interval_s=3600)
    events: list[dict[str, Any]] = [
        {"type": "account", "ts": 0, "account": "adult", "age_band": "adult"},
        *({"type": "account", "ts": 0, "account": f"k{i}", "age_band": "u13"} for i in range(8)),
        {"type": "connect", "ts": 1, "actor": "adult", "target": "k0"},
        {"type": "block", "ts": 1, "actor": "k7", "target": "adult"},
        {"type": "report", "ts": 2, "actor": "k6", "target": "adult"},
        *(
            {"type": "message", "ts": 10 + i, "actor": "adult", "target": f"k{i}"}
            for i in range(1, 7)
        ),
    ]
    found = svc.ingest(events)
    assert {f.rule for f in found} == {
        "adult-requests-to-many-children",
        "child-blocks-and-reports",
    }
    assert not path.exists()  # interval not reached
    svc.close()  # saves what changed
    assert path.exists() and svc.saves == 1
    svc.close()
    assert svc.saves == 1  # nothing changed since
    before = {
        (a, b): svc.may_contact(a, b, 100).to_json()
        for a in ("adult", "k0")
        for b in ("k0", "k5", "k7", "adult")
    }
    svc2 = SafetyEngineService(load_rules(), path)
    after = {
        (a, b): svc2.may_contact(a, b, 100).to_json()
        for a in ("adult", "k0")
        for b in ("k0", "k5", "k7", "adult")
    }
    assert before == after
    assert svc2.engine.stats()["events_applied"] == len(events)
    # the resumed counters go on: one more child keeps the flag (already active: no new finding)
    assert svc2.ingest([{"type": "message", "ts": 20, "actor": "adult", "target": "k7"}]) == []
    # a bad batch is refused whole
    with pytest.raises(InvalidEvent, match=r"events\[1\]"):
        svc2.ingest(
            [{"type": "connect", "ts": 30, "actor": "adult", "target": "k5"}, {"type": "x"}]
        )
    assert not svc2.engine.connected("adult", "k5")
    svc2.close()


def test_background_saver(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    svc = SafetyEngineService(load_rules(), path, snapshot_interval_s=0.05)
    svc.ingest([{"type": "account", "ts": 0, "account": "a", "age_band": "u13"}])
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert json.loads(path.read_text())["bands"] == {"a": "u13"}
    svc.close()


def test_snapshot_errors(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text("{not json")
    with pytest.raises(SnapshotError, match="cannot read"):
        SafetyEngineService(load_rules(), p)
    p.write_text(json.dumps({"version": 99}))
    with pytest.raises(SnapshotError, match="version"):
        SafetyEngineService(load_rules(), p)
    p.write_text(
        json.dumps({"version": 1, "bands": {"a": "adult"}, "connections": [["a"]], "blocks": {}})
    )
    with pytest.raises(SnapshotError, match="malformed"):
        SafetyEngineService(load_rules(), p)
