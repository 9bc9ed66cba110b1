"""The hash-lookup path reads the database only when there is a match to report: HMA's
``/m/lookup`` reads the bank ratios (``api_hma_bank_ratio``) for hits only, and a ratio still
filters hits (bench/bench_load.py measured the per-request ratio read on misses)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from api_live import Live, live_server
from lifeguard.settings import Settings

LISTED = "f" * 16 + "0" * 48


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    with live_server(settings) as lv:
        yield lv


def _ratio_reads(lv: Live) -> list[str]:
    seen: list[str] = []

    def on_exec(_conn: Any, _cursor: Any, statement: str, *_a: Any) -> None:
        if "api_hma_bank_ratio" in statement:
            seen.append(statement)

    engines = [lv.state.db.engine]
    reader = getattr(lv.state.keys, "_reader", None)
    if reader is not None:
        engines.append(reader)
    for eng in engines:
        event.listen(eng, "before_cursor_execute", on_exec)
    return seen


def test_lookup_reads_ratios_only_for_hits(live: Live) -> None:
    token = live.key("match", "bank:write")
    with live.client(token) as c:
        assert c.post("/c/banks", json={"name": "RATIO_BANK"}).status_code == 201
        r = c.post("/c/bank/RATIO_BANK/signal", json={"pdq": LISTED})
        assert r.status_code == 200, r.text
        entry_id = r.json()["id"]
        reads = _ratio_reads(live)
        rng = random.Random(3)
        for _ in range(5):
            miss = "".join(rng.choice("0123456789abcdef") for _ in range(64))
            r = c.get("/m/lookup", params={"signal": miss, "signal_type": "pdq"})
            assert r.status_code == 200 and r.json() == {}
        assert reads == []
        r = c.get("/m/lookup", params={"signal": LISTED, "signal_type": "pdq"})
        assert r.status_code == 200
        assert r.json() == {"RATIO_BANK": [{"bank_content_id": entry_id, "distance": "0"}]}
        assert len(reads) == 1

        # The ratio still filters hits: at 0.5, seeds whose coin lands above it drop the bank.
        r = c.put("/c/bank/RATIO_BANK", json={"enabled_ratio": 0.5})
        assert r.status_code == 200
        kept = {
            seed: bool(
                c.get(
                    "/m/lookup", params={"signal": LISTED, "signal_type": "pdq", "seed": seed}
                ).json()
            )
            for seed in (str(i) for i in range(20))
        }
        expect = {seed: random.Random(seed).random() <= 0.5 for seed in kept}
        assert kept == expect
        assert any(kept.values()) and not all(kept.values())
