"""HTTP: /v1/e2ee/private-matching over a real server (table, root, vouchers, account report)."""

from __future__ import annotations

import base64
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from api_live import Live, live_server
from lifeguard.e2ee.private_matching import AccountState, BlindedTable, make_voucher
from lifeguard.settings import Settings

RNG = random.Random(99)


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    monkeypatch.setenv("LIFEGUARD_EVIDENCE_KEY", base64.b64encode(os.urandom(32)).decode())
    with live_server(Settings(data_dir=tmp_path / "data")) as lv:
        yield lv


def test_http_table_vouchers_and_report(live: Live) -> None:
    listed = [RNG.randbytes(32) for _ in range(10)]
    admin = live.client(live.key("admin"))
    relay = live.client(live.key("match"))
    assert relay.get("/v1/e2ee/private-matching/table/root").status_code == 404
    r = admin.post(
        "/v1/e2ee/private-matching/table",
        json={"pdq": [h.hex() for h in listed], "threshold": 2, "synthetic_rate": 0},
    )
    assert r.status_code == 200, r.text
    info = r.json()
    assert (
        relay.post("/v1/e2ee/private-matching/table", json={"pdq": [listed[0].hex()]}).status_code
        == 403
    )
    # The platform fetches the table for its clients; a client checks it against the published root.
    assert live.client().get("/v1/e2ee/private-matching/table").status_code == 401
    root = relay.get("/v1/e2ee/private-matching/table/root").json()["root"]
    assert root == info["root"]
    raw = relay.get("/v1/e2ee/private-matching/table")
    assert raw.headers["x-lifeguard-table-root"] == root
    table = BlindedTable.from_bytes(raw.content, expected_root=root)
    acct = AccountState.for_table(table)

    def send(pdq: bytes, account: str = "u1") -> int:
        v = base64.b64encode(make_voucher(pdq, table, acct, associated_data=b"m1")).decode()
        resp = relay.post(
            "/v1/e2ee/private-matching/vouchers", json={"account_id": account, "voucher": v}
        )
        assert resp.json() == {"received": True} or resp.status_code >= 400
        return resp.status_code

    assert send(listed[0]) == 202
    assert send(RNG.randbytes(32)) == 202  # not listed: same answer
    rep = admin.get("/v1/e2ee/private-matching/accounts/u1").json()
    assert (rep["received"], rep["opened"], rep["threshold_reached"], rep["matches"]) == (
        2,
        1,
        False,
        [],
    )
    assert send(listed[4]) == 202
    rep = admin.get("/v1/e2ee/private-matching/accounts/u1").json()
    assert rep["actionable"] and sorted(m["listed_index"] for m in rep["matches"]) == [0, 4]
    assert base64.b64decode(rep["matches"][0]["associated_data"]) == b"m1"
    assert relay.get("/v1/e2ee/private-matching/accounts/u1").status_code == 403


def test_http_bad_input_is_4xx(live: Live) -> None:
    admin = live.client(live.key("admin"))
    relay = live.client(live.key("match"))
    body = {"account_id": "a", "voucher": base64.b64encode(b"LGV1" + bytes(100)).decode()}
    r = relay.post("/v1/e2ee/private-matching/vouchers", json=body)
    assert r.status_code == 404 and r.json()["code"] == "no_table"
    r = admin.post("/v1/e2ee/private-matching/table", json={"pdq": ["ab" * 32]})
    assert r.status_code == 200
    r = relay.post("/v1/e2ee/private-matching/vouchers", json=body)
    assert r.status_code == 422 and r.json()["code"] == "invalid_voucher"
    r = relay.post("/v1/e2ee/private-matching/vouchers", json={"account_id": "a", "voucher": "!!"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_voucher"
    r = admin.post("/v1/e2ee/private-matching/table", json={"pdq": ["xyz"]})
    assert r.status_code == 422
    r = admin.post("/v1/e2ee/private-matching/table", json={"pdq": []})
    assert r.status_code == 422


def test_http_without_master_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIFEGUARD_EVIDENCE_KEY", raising=False)
    monkeypatch.delenv("LIFEGUARD_EVIDENCE_KEY_FILE", raising=False)
    with live_server(Settings(data_dir=tmp_path / "data")) as lv:
        admin = lv.client(lv.key("admin"))
        r = admin.post("/v1/e2ee/private-matching/table", json={"pdq": ["ab" * 32]})
        assert r.status_code == 403 and r.json()["code"] == "private_matching_disabled"
    monkeypatch.setenv("LIFEGUARD_EVIDENCE_KEY", "not base64!")
    with live_server(Settings(data_dir=tmp_path / "data2")) as lv:
        admin = lv.client(lv.key("admin"))
        r = admin.post("/v1/e2ee/private-matching/table", json={"pdq": ["ab" * 32]})
        assert r.status_code == 503 and r.json()["code"] == "private_matching_not_configured"
