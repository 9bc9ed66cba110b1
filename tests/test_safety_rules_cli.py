"""``lifeguard safety list|rules|scan`` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifeguard.cli import app
from lifeguard.settings import get_settings


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("LIFEGUARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LIFEGUARD_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_list_import_show_export_scan_delete(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "iwf.txt"
    f.write_text("http://listed.example/a\nwhole.example\tdomain\nftp://x.example/\n")
    r = runner.invoke(app, ["safety", "list", "import", "iwf", str(f)])
    assert r.exit_code == 2 and "kind" in r.output
    r = runner.invoke(app, ["safety", "list", "import", "iwf", str(f), "--kind", "url"])
    assert r.exit_code == 0, r.output
    assert f"{f}:3: scheme 'ftp' is not http or https" in r.stderr
    summary = json.loads(r.stdout)
    assert (summary["added"], summary["rejected"]) == (2, 1)
    r = runner.invoke(app, ["safety", "list", "show"])
    assert json.loads(r.stdout)["entries"] == 2
    r = runner.invoke(app, ["safety", "list", "show", "iwf"])
    assert json.loads(r.stdout)["imports"][0]["rejected"] == 1
    out = tmp_path / "out.txt"
    r = runner.invoke(app, ["safety", "list", "export", "iwf", "-o", str(out)])
    assert r.exit_code == 0 and out.read_text().splitlines()[1:] == [
        "whole.example\tdomain",
        "listed.example/a\tpage",
    ]
    r = runner.invoke(app, ["safety", "scan", "see https://www.listed.example/a/ now"])
    assert json.loads(r.stdout)["urls"][0]["entry"] == "listed.example/a"
    assert runner.invoke(app, ["safety", "list", "export", "nope"]).exit_code == 2
    assert runner.invoke(app, ["safety", "list", "delete", "iwf"]).exit_code == 0
    assert runner.invoke(app, ["safety", "list", "show", "iwf"]).exit_code == 2


def test_rules_check_and_replay(runner: CliRunner, tmp_path: Path) -> None:
    r = runner.invoke(app, ["safety", "rules", "check"])
    assert r.exit_code == 0 and "f1-no-unconnected-messages" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('version = 1\n[[rule]]\nid = "r"\nkind = "rate"\nwindow = "1 day"\n')
    r = runner.invoke(app, ["safety", "rules", "check", str(bad)])
    assert r.exit_code == 2
    assert f"{bad}:5: rule.0.window" in r.stderr and "rule.0.max_recipients" in r.stderr
    events = tmp_path / "events.jsonl"
    lines = [{"type": "account", "ts": 0, "account": "a", "age_band": "adult"}]
    lines += [{"type": "account", "ts": 0, "account": f"k{i}", "age_band": "u13"} for i in range(6)]
    lines += [{"type": "message", "ts": 1 + i, "actor": "a", "target": f"k{i}"} for i in range(6)]
    events.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    snap = tmp_path / "snap.json"
    r = runner.invoke(app, ["safety", "rules", "replay", str(events), "--snapshot", str(snap)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[0])["rule"] == "adult-requests-to-many-children"
    assert json.loads(snap.read_text())["events_applied"] == 13
    events.write_text(json.dumps(lines[0]) + "\n{oops\n")
    r = runner.invoke(app, ["safety", "rules", "replay", str(events)])
    assert r.exit_code == 2 and f"{events}:2: not JSON" in r.stderr
