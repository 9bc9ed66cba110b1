"""Contact rules and list scanning over real HTTP: /v1/safety/events, /may-contact, /scan-text."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from api_live import live_server
from lifeguard.api.config import ApiSettings
from lifeguard.safety.lists import SafetyLists
from lifeguard.safety.normalize import fold
from lifeguard.settings import Settings


def _events() -> list[dict[str, Any]]:
    return [
        {"type": "account", "ts": 0, "account": "adult", "age_band": "adult"},
        *({"type": "account", "ts": 0, "account": f"k{i}", "age_band": "13-15"} for i in range(7)),
        {"type": "connect", "ts": 1, "actor": "adult", "target": "k0"},
        *(
            {"type": "contact_request", "ts": 10 + i, "actor": "adult", "target": f"k{i}"}
            for i in range(1, 7)
        ),
    ]


def test_events_and_decisions_over_http(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, safety_snapshot_interval_s=0.001)
    with (
        live_server(settings, ApiSettings(rate_limit_per_s=0)) as lv,
        lv.client(lv.key("match")) as c,
    ):
        r = c.post("/v1/safety/events", json={"events": _events()})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["applied"] == 15
        assert [(f["rule"], f["account"], f["action"]) for f in body["findings"]] == [
            ("adult-requests-to-many-children", "adult", "flag")
        ]
        r = c.post("/v1/safety/may-contact", json={"sender": "adult", "recipient": "k3", "at": 20})
        d = r.json()
        assert r.status_code == 200 and d["allowed"] is False and d["action"] == "deny"
        assert {x["rule"] for x in d["reasons"]} == {
            "f1-no-unconnected-messages",
            "adult-requests-to-many-children",
        }
        r = c.post(
            "/v1/safety/may-contact",
            json={"sender": "adult", "recipient": "k0", "at": "1970-01-01T00:00:20Z"},
        )
        assert r.json() == {"allowed": True, "action": "allow", "reasons": []}
        # one bad event refuses the batch, naming it
        r = c.post(
            "/v1/safety/events",
            json={
                "events": [
                    {"type": "connect", "ts": 30, "actor": "adult", "target": "k3"},
                    {"type": "message", "ts": 31, "actor": "adult", "target": "k3", "text": "hi"},
                ]
            },
        )
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "invalid_event" and "events[1]" in r.json()["detail"]
        r = c.post("/v1/safety/may-contact", json={"sender": "adult", "recipient": "k3", "at": 40})
        assert r.json()["allowed"] is False  # the connect of the refused batch was not applied
        for bad in (
            {"sender": "adult"},
            {"sender": "adult", "recipient": "k3", "kind": "poke"},
            {"sender": "adult", "recipient": "k3", "at": "yesterday"},
            {"sender": "", "recipient": "k3"},
        ):
            r = c.post("/v1/safety/may-contact", json=bad)
            assert r.status_code == 422, (bad, r.text)
        r = c.post("/v1/safety/events", json={"events": [{}] * 10_001})
        assert r.status_code == 422
    # a restarted service resumes from the snapshot
    with (
        live_server(settings, ApiSettings(rate_limit_per_s=0)) as lv,
        lv.client(lv.key("match")) as c,
    ):
        r = c.post("/v1/safety/may-contact", json={"sender": "adult", "recipient": "k0", "at": 20})
        assert r.json()["allowed"] is True  # the connection survived the restart
        r = c.post(
            "/v1/safety/may-contact",
            json={"sender": "adult", "recipient": "k6", "kind": "contact_request", "at": 20},
        )
        assert r.json()["action"] == "flag"  # so did the rate counter
    with (
        live_server(settings, ApiSettings(rate_limit_per_s=0)) as lv,
        lv.client(lv.key("bank:read")) as c,
    ):
        r = c.post("/v1/safety/may-contact", json={"sender": "a", "recipient": "b"})
        assert r.status_code == 403


def test_bad_rules_file_is_a_503_not_a_500(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('version = 1\n[[rule]]\nid = "x"\nkind = "deny_contact"\nsender = "toddler"\n')
    settings = Settings(data_dir=tmp_path, safety_rules_file=rules)
    with (
        live_server(settings, ApiSettings(rate_limit_per_s=0)) as lv,
        lv.client(lv.key("match")) as c,
    ):
        r = c.post("/v1/safety/may-contact", json={"sender": "a", "recipient": "b"})
        assert r.status_code == 503 and r.json()["code"] == "safety_engine_unavailable"
        assert "rules.toml:5: rule.0.sender" in r.json()["detail"]


def test_scan_text_over_http(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with (
        live_server(settings, ApiSettings(rate_limit_per_s=0)) as lv,
        lv.client(lv.key("match")) as c,
    ):
        r = c.post("/v1/safety/scan-text", json={"text": "nothing listed at example.com yet"})
        assert r.json() == {"urls": [], "keywords": []}
        lists = SafetyLists(lv.state.db)
        lists.import_file(
            "urls", io.StringIO("http://listed.example/a\nwhole.example domain\n"), kind="url"
        )
        lists.import_file("kw", io.StringIO("keep it between us\tsecrecy\n"), kind="keyword")
        lv.app.state.safety_lists.ttl_s = 0  # see the import at once
        r = c.post(
            "/v1/safety/scan-text",
            json={"text": "k33p it between us. see LISTED.example/a/ or x.whole[.]example/y"},
        )
        body = r.json()
        assert [(u["kind"], u["canonical"]) for u in body["urls"]] == [
            ("page", "listed.example/a"),
            ("domain", "x.whole.example/y"),
        ]
        assert [(k["entry"], k["category"]) for k in body["keywords"]] == [
            (fold("keep it between us"), "secrecy")
        ]
        r = c.post(
            "/v1/safety/scan-text", json={"text": "x.whole[.]example/y", "obfuscated": False}
        )
        assert r.json()["urls"] == []
        assert c.post("/v1/safety/scan-text", json={"text": "x" * 70_000}).status_code == 422
