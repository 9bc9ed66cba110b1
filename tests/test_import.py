"""Imports: every rejection reason with its line, idempotence, atomicity (exception and SIGKILL),
streaming memory, gzip, streams (SQLite + PostgreSQL)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lifeguard.banks import Banks, import_entries
from lifeguard.errors import ImportFormatError
from lifeguard.store.db import Database
from lifeguard.store.models import ImportJob, ImportRejection


def md5(i: int) -> str:
    return hashlib.md5(str(i).encode(), usedforsecurity=False).hexdigest()


def pdq(i: int) -> str:
    return hashlib.sha256(f"pdq{i}".encode()).hexdigest()


@pytest.fixture
def banks(db: Database) -> Iterator[Banks]:
    b = Banks(db)
    b.create_bank("B")
    yield b
    b.close()


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def rejections(r: object) -> list[tuple[int, str]]:
    return [(x.line_no, x.reason) for x in r.rejections]  # type: ignore[attr-defined]


def test_plain_text_rejections_have_line_numbers(banks: Banks, tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "list.txt",
        "# a comment\n"
        f"{md5(1)}\n"
        "\n"
        f"{md5(2).upper()}\n"  # upper case is fine
        f"{md5(3)[:-1]}\n"  # line 5: wrong length
        f"{'g' + md5(4)[1:]}\n"  # line 6: bad hex
        f"{md5(1)}\n",  # line 7: duplicate within the file
    )
    r = import_entries(banks, "B", p, format="plain", signal_type="md5", added_by="alice")
    assert (r.lines, r.added, r.duplicates, r.rejected) == (7, 2, 1, 2)
    assert rejections(r) == [
        (5, "md5: wrong length 31, expected 32 hex digits"),
        (6, "md5: not hexadecimal (character 'g')"),
    ]
    assert r.rejections[0].text == md5(3)[:-1]
    page = banks.list_entries("B")
    assert sorted(e.value for e in page.items) == sorted([md5(1), md5(2)])
    assert {(e.added_by, e.rev) for e in page.items} == {("alice", r.rev)}
    # Stored with the job, in order.
    assert [(x.line_no, x.reason) for x in banks.import_rejections(r.job_id)] == rejections(r)
    job = banks.import_job(r.job_id)
    assert (job.status, job.lines, job.added, job.duplicates, job.rejected) == ("done", 7, 2, 1, 2)


def test_te_and_jsonl_rejection_reasons(banks: Banks, tmp_path: Path) -> None:
    te = write(
        tmp_path,
        "te.txt",
        f"pdq {pdq(1)}\n"
        f"video_md5 {md5(1)}\n"
        f"phash {pdq(2)}\n"  # 3: unknown type
        f"{pdq(3)}\n"  # 4: no type, none given
        f"pdq {pdq(4)} 'Sample Collab' {{metadata}}\n",
    )
    r = import_entries(banks, "B", te, format="te")
    assert r.added == 3 and r.rejected == 2
    assert rejections(r) == [
        (3, "unknown signal type 'phash'"),
        (4, "missing signal type (expected '<signal_type> <hash>')"),
    ]
    assert banks.find_entry("B", "pdq", pdq(4)).source == "Sample Collab"

    jl = write(
        tmp_path,
        "x.jsonl",
        "\n".join(
            [
                json.dumps({"signal_type": "md5", "value": md5(10), "note": "ok"}),
                '{"signal_type": "md5", "value": ',  # 2: bad JSON
                json.dumps({"signal_type": "md5"}),  # 3: missing value
                json.dumps([1, 2]),  # 4: not an object
                json.dumps({"signal_type": "md5", "value": 12345}),  # 5: value not a string
                json.dumps({"signal_type": "md5", "value": md5(11), "quality": 500}),  # 6
                json.dumps({"signal_type": "md5", "value": md5(12), "categories": ["a", ""]}),  # 7
                json.dumps({"value": md5(13)}),  # 8: no type, none given
                json.dumps({"type": "HASH_MD5", "raw_indicator": md5(14), "id": 77, "tags": ["x"]}),
                json.dumps({"signal_type": "md5", "value": md5(15), "added_at": "yesterday"}),
                json.dumps({"signal_type": "md5", "value": md5(16), "status": "gone"}),
            ]
        )
        + "\n",
    )
    r = import_entries(banks, "B", jl)
    assert r.format == "jsonl"
    assert rejections(r) == [
        (2, "bad JSON: Expecting value at column 33"),
        (3, "missing value (no key among value, hash, signal, signal_str, signal_value, "
            "raw_indicator, indicator, and no signal type keys)"),
        (4, "expected a JSON object, got list"),
        (5, "value: expected a string, got int"),
        (6, "quality: 500 outside 0..100"),
        (7, "categories: empty label"),
        (8, "missing signal type"),
        (10, "added_at: 'yesterday' is not an ISO 8601 time"),
        (11, "status: 'gone' is not one of active, disabled, removed"),
    ]  # fmt: skip
    assert r.added == 2
    d = banks.find_entry("B", "md5", md5(14))
    assert (d.external_id, d.categories) == ("77", ("x",))


def test_csv_header_mapping_and_row_rejections(banks: Banks, tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "l.csv",
        "Hash,Signal_Type,ID,Note,Source,Categories,quality\n"
        f"{pdq(1)},pdq,e1,first,list,A1;B2,90\n"
        f"{pdq(2)},pdq,e2\n"  # 3: too few fields
        f'{pdq(3)},pdq,e3,"multi\nline note",list,A1,\n'  # 4-5: a quoted newline is fine
        f"{md5(1)},sha256,e4,,,,\n"  # 6: wrong length for sha256
        f",pdq,e5,,,,\n"  # 7: missing value
        f"{pdq(6)},pdq,e6,,,,high\n",  # 8: bad quality
    )
    r = import_entries(banks, "B", p, source_label="fallback")
    assert r.format == "csv" and r.added == 2
    assert rejections(r) == [
        (3, "3 fields, the header has 7"),
        (6, "sha256: wrong length 32, expected 64 hex digits"),
        (7, "missing value"),
        (8, "quality: 'high' is not an integer"),
    ]
    e = banks.find_entry("B", "pdq", pdq(1))
    assert (e.external_id, e.note, e.source, e.categories, e.quality) == (
        "e1", "first", "list", ("A1", "B2"), 90,
    )  # fmt: skip
    e3 = banks.find_entry("B", "pdq", pdq(3))
    assert e3.note == "multi\nline note" and e3.quality is None


def test_missing_hash_column_fails_the_whole_file(banks: Banks, tmp_path: Path) -> None:
    p = write(tmp_path, "l.csv", f"signal_type,digest\nmd5,{md5(1)}\n")
    with pytest.raises(ImportFormatError, match=r"line 1: no hash column in the header"):
        import_entries(banks, "B", p)
    assert banks.get_bank("B").entry_counts["active"] == 0
    with banks.db.session() as s:
        jobs = s.execute(select(ImportJob.status, ImportJob.error)).all()
    assert len(jobs) == 1 and jobs[0][0] == "failed" and "no hash column" in jobs[0][1]
    p2 = write(tmp_path, "l2.tsv", f"hash\tnote\n{md5(1)}\tx\n")
    with pytest.raises(ImportFormatError, match="no signal_type column"):
        import_entries(banks, "B", p2)
    assert import_entries(banks, "B", p2, signal_type="md5").added == 1
    with pytest.raises(ImportFormatError, match="plain format needs the signal type"):
        import_entries(banks, "B", write(tmp_path, "p.txt", md5(1) + "\n"), format="plain")


def test_non_utf8_line_is_rejected_not_fatal(banks: Banks, tmp_path: Path) -> None:
    p = tmp_path / "l.txt"
    p.write_bytes(f"{md5(1)}\n".encode() + b"\xff\xfe" + b"a" * 30 + b"\n" + f"{md5(2)}\n".encode())
    r = import_entries(banks, "B", p, format="plain", signal_type="md5")
    assert r.added == 2 and rejections(r) == [(2, "not valid UTF-8 (byte 0)")]


def test_reimport_is_idempotent_and_respects_tombstones(banks: Banks, tmp_path: Path) -> None:
    p = write(tmp_path, "l.txt", "".join(f"{md5(i)}\n" for i in range(50)))
    r1 = import_entries(banks, "B", p, format="plain", signal_type="md5", batch_size=7)
    assert (r1.added, r1.duplicates) == (50, 0)
    rev = banks.current_revision()
    removed = banks.find_entry("B", "md5", md5(3))
    banks.remove_entry(removed.id, reason="false positive")
    r2 = import_entries(banks, "B", p, format="plain", signal_type="md5", batch_size=7)
    assert (r2.added, r2.duplicates, r2.tombstoned, r2.rejected) == (0, 50, 1, 0)
    assert banks.get_entry(removed.id).status == "removed"
    # No entry changed, so a matcher sees only the removal.
    _, changes = banks.changes_since(rev)
    assert [(c.entry_id, c.status) for c in changes] == [(removed.id, "removed")]
    counts = banks.get_bank("B").entry_counts
    assert counts == {"active": 49, "disabled": 0, "removed": 1}


def test_import_changes_reach_changes_since(banks: Banks, tmp_path: Path) -> None:
    start = banks.current_revision()
    p = write(tmp_path, "l.txt", "".join(f"pdq {pdq(i)}\n" for i in range(20)))
    r = import_entries(banks, "B", p)
    new_rev, changes = banks.changes_since(start)
    assert new_rev == r.rev
    assert sorted(c.value for c in changes) == sorted(pdq(i) for i in range(20))
    assert {c.status for c in changes} == {"active"}


def test_exception_midway_rolls_back_everything(banks: Banks, tmp_path: Path) -> None:
    banks.add_entry("B", "md5", md5(0))  # already there before
    p = write(tmp_path, "l.txt", "".join(f"{md5(i)}\nbad\n" for i in range(1, 101)))
    calls: list[tuple[int, int]] = []

    def progress(lines: int, nbytes: int) -> None:
        calls.append((lines, nbytes))
        if len(calls) == 3:
            raise RuntimeError("operator cancelled")

    rev = banks.current_revision()
    with pytest.raises(RuntimeError, match="operator cancelled"):
        import_entries(
            banks, "B", p, format="plain", signal_type="md5", batch_size=10, progress=progress
        )
    assert len(calls) == 3 and calls[0][0] < calls[1][0] < calls[2][0]
    assert calls[1][1] > calls[0][1]
    assert banks.get_bank("B").entry_counts["active"] == 1
    assert banks.current_revision() == rev
    with banks.db.session() as s:
        assert s.execute(select(func.count()).select_from(ImportRejection)).scalar_one() == 0
        jobs = s.execute(select(ImportJob.status, ImportJob.error)).all()
    assert jobs == [("failed", "RuntimeError: operator cancelled")]


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from lifeguard.banks import Banks, import_entries
    from lifeguard.store.db import Database

    banks = Banks(Database.open(url=sys.argv[1]))

    def progress(lines, nbytes):
        print(lines, flush=True)
        time.sleep(0.2)

    import_entries(banks, "B", sys.argv[2], format="plain", signal_type="md5",
                   batch_size=1000, progress=progress)
    print("finished", flush=True)
    """
)


def test_sigkill_midway_leaves_nothing(banks: Banks, db: Database, tmp_path: Path) -> None:
    p = write(tmp_path, "big.txt", "".join(f"{md5(i)}\n" for i in range(200_000)))
    script = write(tmp_path, "imp.py", KILL_SCRIPT)
    url = db.engine.url.render_as_string(hide_password=False)
    rev = banks.current_revision()
    proc = subprocess.Popen(
        [sys.executable, str(script), url, str(p)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        seen = 0
        for line in proc.stdout:
            if line.strip() == "finished":
                pytest.fail("import finished before it could be killed")
            seen = int(line)
            if seen >= 3000:  # three batches inserted, transaction open
                break
        assert seen >= 3000
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert banks.get_bank("B").entry_counts == {"active": 0, "disabled": 0, "removed": 0}
    assert banks.current_revision() == rev
    # The store is usable afterwards (locks released, SQLite journal recovered).
    r = import_entries(banks, "B", io.StringIO(md5(1) + "\n"), format="plain", signal_type="md5")
    assert r.added == 1


def _peak_import(banks: Banks, bank: str, path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        r = import_entries(banks, bank, path, batch_size=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.rejected == 0
    return r.added, peak


def test_streaming_import_memory_stays_small(banks: Banks, tmp_path: Path) -> None:
    """Peak Python memory is bounded by the batch, not the file: a 10x bigger file needs about
    the same, and far less than its size."""
    paths = {}
    for n in (20_000, 200_000):
        p = paths[n] = tmp_path / f"l{n}.txt"
        with p.open("w") as f:
            for i in range(n):
                f.write(f"pdq {pdq(i)}\n")
    banks.create_bank("SMALL")
    added_small, peak_small = _peak_import(banks, "SMALL", paths[20_000])
    added_big, peak_big = _peak_import(banks, "B", paths[200_000])
    size = paths[200_000].stat().st_size
    assert (added_small, added_big) == (20_000, 200_000)
    assert peak_big < size / 4, f"peak {peak_big} bytes for a {size}-byte file"
    assert peak_big < 1.5 * peak_small + 1_000_000, (peak_small, peak_big)


def test_gzip_and_text_stream_inputs(banks: Banks, tmp_path: Path) -> None:
    p = tmp_path / "l.csv.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write("signal_type,value\n")
        for i in range(30):
            f.write(f"md5,{md5(i)}\n")
    r = import_entries(banks, "B", p)
    assert (r.format, r.added, r.source_name) == ("csv", 30, str(tmp_path / "l.csv"))
    stream = io.StringIO("".join(f"sha256 {pdq(i)}\n" for i in range(5)))
    r2 = import_entries(banks, "B", stream)
    assert (r2.format, r2.added) == ("te", 5)
    raw = io.BytesIO(f"{md5(100)}\n{md5(101)}\n".encode())
    r3 = import_entries(banks, "B", raw, signal_type="md5", name="upload.txt")
    assert (r3.format, r3.added, r3.source_name) == ("plain", 2, "upload.txt")


def test_rejections_beyond_the_returned_cap_are_stored(banks: Banks, tmp_path: Path) -> None:
    p = write(tmp_path, "l.txt", "".join(f"nothex{i}\n" for i in range(30)))
    r = import_entries(banks, "B", p, format="plain", signal_type="md5", max_rejections=5)
    assert r.rejected == 30 and len(r.rejections) == 5
    stored = banks.import_rejections(r.job_id, limit=100)
    assert [x.line_no for x in stored] == list(range(1, 31))
    assert banks.import_rejections(r.job_id, after_line=28) == stored[28:]


def test_import_into_missing_or_deleted_bank(banks: Banks, tmp_path: Path) -> None:
    from lifeguard.errors import NotFound

    p = write(tmp_path, "l.txt", md5(1) + "\n")
    with pytest.raises(NotFound):
        import_entries(banks, "NOPE", p, format="plain", signal_type="md5")
    banks.delete_bank("B")
    with pytest.raises(NotFound, match="deleted"):
        import_entries(banks, banks.list_banks(include_deleted=True)[0].id, p, signal_type="md5")


def test_huge_csv_field_gets_a_precise_reason(banks: Banks, tmp_path: Path) -> None:
    """A field over csv's default 128 KiB limit is read and judged, not a csv error."""
    p = write(tmp_path, "l.csv", f"signal_type,value\nmd5,{'a' * 200_000}\nmd5,{md5(1)}\n")
    r = import_entries(banks, "B", p)
    assert r.added == 1
    assert rejections(r) == [(2, "md5: wrong length 200000, expected 32 hex digits")]
    assert len(r.rejections[0].text) == 500
