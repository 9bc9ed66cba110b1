"""The command line, in-process (Typer's runner) plus one real subprocess run."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import PHOTOS
from lifeguard.cli import app
from lifeguard.settings import get_settings
from lifeguard.signals.pdq import DIHEDRAL_NAMES

KODAK = sorted((PHOTOS / "kodak").glob("*.png"))
runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[Path]:
    monkeypatch.setenv("LIFEGUARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LIFEGUARD_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def _media_dir(tmp: Path) -> Path:
    d = tmp / "media"
    (d / "sub").mkdir(parents=True)
    shutil.copy(KODAK[0], d / "a.png")
    with Image.open(KODAK[1]) as im:
        im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
            d / "sub" / "b-flipped.jpg", quality=90
        )
    shutil.copy(KODAK[9], d / "sub" / "c-unlisted.png")
    (d / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0not a jpeg at all")
    (d / "empty.png").write_bytes(b"")
    (d / "notes.txt").write_text("not media, skipped by extension")
    return d


def test_hash_folder_recurses_and_reports_errors_per_file(env: Path) -> None:
    d = _media_dir(env)
    code, out, _ = run("hash", str(d))
    assert code == 0
    recs = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert set(recs) == {"a.png", "b-flipped.jpg", "c-unlisted.png", "broken.jpg", "empty.png"}
    a = recs["a.png"]
    assert (
        len(a["pdq"]) == 64
        and a["quality"] >= 50
        and len(a["md5"]) == 32
        and len(a["sha256"]) == 64
    )
    assert recs["broken.jpg"]["error"]["code"] in ("corrupt", "truncated", "unsupported")
    assert recs["empty.png"]["error"]["code"] == "empty"
    code, out, _ = run("hash", str(d / "a.png"), "--format", "table")
    assert code == 0 and a["pdq"][:10] in out


def test_bank_lifecycle_import_export_and_match(env: Path) -> None:
    d = _media_dir(env)
    assert run("bank", "create", "KNOWN", "--category", "A1", "--supplier", "test")[0] == 0
    assert run("bank", "create", "KNOWN")[0] == 2  # duplicate name: clear error, exit 2
    code, out, _ = run("entry", "add", "KNOWN", "--media", str(KODAK[0]), "--media", str(KODAK[1]))
    assert code == 0 and out.count("added") == 4  # PDQ + MD5 each
    code, _, err = run("entry", "add", "KNOWN", "--signal", "pdq:nothex")
    assert code == 1 and "not hexadecimal" in err
    # Import a plain list with a bad line; the good lines land, the bad one is reported by number.
    lst = env / "list.txt"
    good = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
    lst.write_text(f"# a comment\n{good}\n{'0' * 63}\n")
    code, out, err = run(
        "bank",
        "import",
        "KNOWN",
        str(lst),
        "--signal-type",
        "pdq",
        "--rejections",
        str(env / "rej.jsonl"),
    )
    assert code == 0 and "1 added" in out.replace(",", "") and "line 3" in err
    rej = [json.loads(x) for x in (env / "rej.jsonl").read_text().splitlines()]
    assert rej[0]["line"] == 3 and "length" in rej[0]["reason"]
    code, out, _ = run("bank", "list", "--format", "jsonl")
    bank = json.loads(out.splitlines()[0])
    assert (
        bank["name"] == "KNOWN" and bank["entries"]["active"] == 5 and bank["categories"] == ["A1"]
    )
    code, _, _ = run("bank", "export", "KNOWN", "--out", str(env / "out.csv"))
    assert code == 0 and good in (env / "out.csv").read_text()

    code, out, _ = run("match", str(d))
    recs = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert recs["a.png"]["matched"] and recs["a.png"]["matches"][0]["variant"] in ("plain", "exact")
    flipped = recs["b-flipped.jpg"]
    assert flipped["matched"] and flipped["matches"][0]["variant"] == "dihedral"
    # A left-right mirror is undone by the dihedral variant at index 5 (see signals/pdq.py).
    assert flipped["matches"][0]["query_variant"] == DIHEDRAL_NAMES[5]
    assert not recs["c-unlisted.png"]["matched"]
    assert "error" in recs["broken.jpg"]
    code, out, _ = run("match", str(d), "--no-variants")
    recs = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert not recs["b-flipped.jpg"]["matched"]

    # Disable the bank: nothing matches; enable again; delete: tombstones kept.
    assert run("bank", "disable", "KNOWN")[0] == 0
    code, out, _ = run("match", str(d / "a.png"))
    assert not json.loads(out)["matched"]
    assert run("bank", "enable", "KNOWN")[0] == 0
    entry_id = json.loads(run("match", str(d / "a.png"))[1])["matches"][0]["entry_id"]
    assert run("entry", "disable", str(entry_id), "--reason", "check")[0] == 0
    assert json.loads(run("entry", "show", str(entry_id))[1])["status"] == "disabled"
    assert run("entry", "remove", str(entry_id))[0] == 0
    assert run("entry", "show", "999999")[0] == 2
    assert run("bank", "delete", "KNOWN", "--reason", "test")[0] == 0
    assert run("bank", "show", "KNOWN")[0] == 2


def test_scan_resumes_after_interruption(env: Path) -> None:
    d = _media_dir(env)
    run("bank", "create", "KNOWN")
    run("entry", "add", "KNOWN", "--media", str(KODAK[0]))
    report = env / "report.jsonl"
    code, _, _ = run("scan", str(d), "--out", str(report))
    assert code == 0
    lines = report.read_text().splitlines()
    assert len(lines) == 5
    # Simulate a crash: keep two records and half of a third.
    report.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][: len(lines[2]) // 2])
    code, _, err = run("scan", str(d), "--out", str(report))
    assert code == 0 and "2 already in" in err
    again = [json.loads(x) for x in report.read_text().splitlines()]
    assert sorted(r["path"] for r in again) == sorted(json.loads(x)["path"] for x in lines)
    assert sum(bool(r.get("matched")) for r in again) == 1


def test_index_build_and_status(env: Path) -> None:
    run("bank", "create", "KNOWN")
    run("entry", "add", "KNOWN", "--media", str(KODAK[0]))
    code, out, _ = run("index", "build")
    import re

    items = re.search(r"(\d+) PDQ items \(plain \+ listing variants\)", out)
    assert code == 0 and items and 1 <= int(items.group(1)) <= 8
    code, out, _ = run("index", "status")
    st = json.loads(out)
    assert st["snapshot_revision"] == st["revision"] and st["md5"] == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_real_subprocess_hash(tmp_path: Path, db_url: str) -> None:
    exe = Path(sys.executable).with_name("lifeguard")
    buf = io.BytesIO()
    with Image.open(KODAK[0]) as im:
        im.convert("RGB").save(buf, "JPEG")
    f = tmp_path / "x.jpg"
    f.write_bytes(buf.getvalue())
    env = {**os.environ, "LIFEGUARD_DATA_DIR": str(tmp_path / "d")}
    r = subprocess.run(
        [str(exe), "hash", str(f), str(tmp_path / "missing.jpg")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert recs[0]["pdq"] and recs[1]["error"]["code"] == "not_found"


def test_match_record_writes_events_without_media(env: Path) -> None:
    d = _media_dir(env)
    run("bank", "create", "KNOWN")
    run("entry", "add", "KNOWN", "--media", str(KODAK[1]))
    code, _, _ = run("match", str(d))
    assert code == 0 and run("events", "list")[1].strip() == ""  # no --record: nothing stored
    code, _, _ = run("match", str(d), "--record")
    assert code == 0
    events = [json.loads(x) for x in run("events", "list")[1].splitlines()]
    assert events and {Path(e["content_id"]).name for e in events} == {"b-flipped.jpg"}
    assert events[0]["match"]["variant"] == "dihedral"
    assert "path" not in json.dumps(events[0]["query"])  # hashes only, never the media or its path
