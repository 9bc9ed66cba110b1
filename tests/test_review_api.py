"""Review over real HTTP: user reports (multipart, media to the vault), the case API with
optimistic locking (409), appeals by a different key, LE reports and transparency (admin)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from api_live import live_server
from conftest import PHOTOS
from lifeguard.settings import Settings


def form(fields: dict[str, str]) -> dict[str, Any]:
    """A multipart/form-data body without files (the route takes multipart only)."""
    boundary = "lgtestboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return {
        "content": body,
        "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    }


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFEGUARD_EVIDENCE_KEY", base64.b64encode(b"a" * 32).decode())
    monkeypatch.setenv("LIFEGUARD_LE_COMPANY", "Example Chat Ltd")
    monkeypatch.setenv("LIFEGUARD_LE_SERVICE", "Example Chat")
    monkeypatch.setenv("LIFEGUARD_LE_CONTACT_FIRST_NAME", "Trust")
    monkeypatch.setenv("LIFEGUARD_LE_CONTACT_LAST_NAME", "Safety")
    monkeypatch.setenv("LIFEGUARD_LE_CONTACT_EMAIL", "safety@example.org")


def test_reports_and_decisions_over_http(settings: Settings) -> None:
    photo: Path = sorted(PHOTOS.rglob("*.jpg"))[0]
    with live_server(settings) as lv:
        reporter = lv.client(lv.key("report"))
        rev1 = lv.client(lv.key("review"))
        rev2 = lv.client(lv.key("review"))
        admin = lv.client(lv.key("admin"))
        base = {"reporter": "u-1", "surface": "private_message", "reported_account": "acc-1"}
        # bad reason -> 422 problem document naming the field
        r = reporter.post("/v1/reports", **form({**base, "reason": "spam"}))
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert "reason" in r.text
        r = reporter.post("/v1/reports", **form({**base, "reason": "csam", "content": "[{}]"}))
        assert r.status_code == 422 and r.json()["code"] == "validation_error"
        content = json.dumps([{"content_id": "msg-1", "md5": "ab" * 16}])
        r = reporter.post(
            "/v1/reports",
            data={**base, "reason": "sextortion", "content": content, "child_at_risk_now": "true"},
            files=[("media", (photo.name, photo.read_bytes(), "image/jpeg"))],
        )
        assert r.status_code == 201, r.text
        case = r.json()
        assert case["priority"] == 1 and case["item_count"] == 2
        assert [i["kind"] for i in case["items"]] == ["hash", "media"]
        assert case["items"][1]["has_media"] and case["items"][1]["mime"] == "image/jpeg"
        assert reporter.get("/v1/cases").status_code == 403  # a report key cannot read cases
        q = rev1.get("/v1/cases").json()
        assert [c["id"] for c in q] == [case["id"]]
        cid, ver = case["id"], case["version"]
        assert rev1.get(f"/v1/cases/{cid}").json()["reports"][0]["reason"] == "sextortion"
        assert rev1.get("/v1/cases/999999").status_code == 404
        r = rev1.post(
            f"/v1/cases/{cid}/decision", json={"decision": "maybe", "expected_version": ver}
        )
        assert r.status_code == 422
        r = rev1.post(
            f"/v1/cases/{cid}/decision", json={"decision": "confirm", "expected_version": ver}
        )
        assert r.status_code == 200 and r.json()["decision"] == "confirm"
        r = rev2.post(
            f"/v1/cases/{cid}/decision", json={"decision": "no_violation", "expected_version": ver}
        )
        assert r.status_code == 409 and r.json()["code"] == "conflict"
        # appeal: filed with a report key, decided by another reviewer key (the decider gets 403)
        r = reporter.post(f"/v1/cases/{cid}/appeal", json={"appellant": "acc-1", "reason": "no"})
        assert r.status_code == 200 and r.json()["status"] == "appealed"
        ver = r.json()["version"]
        body = {"upheld": False, "expected_version": ver}
        assert rev1.post(f"/v1/cases/{cid}/appeal-decision", json=body).status_code == 403
        r = rev2.post(f"/v1/cases/{cid}/appeal-decision", json=body)
        assert r.status_code == 200 and r.json()["status"] == "closed"
        # LE report: admin only; built (no endpoint configured) from the confirmed case
        le = {"kind": "ncmec", "classification": "B2"}
        assert rev2.post(f"/v1/cases/{cid}/le-reports", json=le).status_code == 403
        r = admin.post(f"/v1/cases/{cid}/le-reports", json=le)
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "built" and "<report" in r.json()["document"]
        r = admin.post(f"/v1/cases/{cid}/le-reports", json={"kind": "fbi"})
        assert r.status_code == 422
        # transparency (admin): JSON and CSV
        today = dt.datetime.now(dt.UTC).date().isoformat()
        r = admin.get("/v1/transparency", params={"from": today, "to": today})
        assert r.status_code == 200, r.text
        t = r.json()
        assert t["detections"]["by_source"]["report"] == 2
        assert t["decisions"]["confirm"] == 1 and t["le_reports"]["ncmec"]["built"] == 1
        r = admin.get("/v1/transparency", params={"from": today, "to": today, "format": "csv"})
        assert r.headers["content-type"].startswith("text/csv")
        assert "decisions,confirm,1" in r.text.splitlines()
        r = admin.get("/v1/transparency", params={"from": today, "to": "2000-01-01"})
        assert r.status_code == 422
        assert rev1.get("/v1/transparency", params={"from": today, "to": today}).status_code == 403
        for c in (reporter, rev1, rev2, admin):
            c.close()
