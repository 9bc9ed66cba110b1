"""Formats: detection, the ThreatExchange/HMA shapes, and export -> import round trips."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TE_DATA
from lifeguard.banks import Banks, EntryInfo, detect_format, export_bank, import_entries
from lifeguard.banks.service import InvalidField
from lifeguard.errors import ImportFormatError
from lifeguard.store.db import Database


def md5(i: int) -> str:
    return hashlib.md5(str(i).encode(), usedforsecurity=False).hexdigest()


def pdq(i: int) -> str:
    return hashlib.sha256(f"pdq{i}".encode()).hexdigest()


@pytest.fixture
def banks(db: Database) -> Iterator[Banks]:
    b = Banks(db)
    yield b
    b.close()


@pytest.mark.parametrize(
    ("name", "head", "want"),
    [
        ("x.csv", [], "csv"),
        ("x.CSV.gz", [], "csv"),
        ("x.tsv", [], "tsv"),
        ("x.ndjson", [], "jsonl"),
        ("x.json", [], "json"),
        ("<stdin>", ["# c\n", "\n", '{"pdq": "ab"}\n'], "jsonl"),
        ("<stdin>", ["[\n"], "json"),
        ("list.txt", ["hash,signal_type\n"], "csv"),
        ("list.txt", ["signal_type\tvalue\n"], "tsv"),
        ("list.txt", [f"pdq {pdq(1)}\n"], "te"),
        ("list.txt", [f"ROTATE90 pdq {pdq(1)}\n"], "te"),
        ("list.txt", [f"{md5(1)}\n"], "plain"),
        ("empty", [], "plain"),
    ],
)
def test_detect_format(name: str, head: list[str], want: str) -> None:
    assert detect_format(name, head) == want


def test_format_override_beats_extension(banks: Banks, tmp_path: Path) -> None:
    banks.create_bank("B")
    p = tmp_path / "list.csv"
    p.write_text(f"pdq {pdq(1)}\n")
    with pytest.raises(ImportFormatError, match="no hash column"):
        import_entries(banks, "B", p)
    assert import_entries(banks, "B", p, format="te").added == 1
    with pytest.raises(ImportFormatError, match="unknown format 'xml'"):
        import_entries(banks, "B", p, format="xml")


def test_hma_shapes(banks: Banks, tmp_path: Path) -> None:
    """HMA's POST /c/bank/<name>/signal body ({type: hash}) and bank content objects."""
    banks.create_bank("B")
    p = tmp_path / "hma.jsonl"
    p.write_text(
        "\n".join(
            [
                json.dumps({"pdq": pdq(1), "video_md5": md5(1)}),
                json.dumps({"pdq": pdq(2), "tmk": "abc"}),  # tmk: not a lifeguard type
                json.dumps(
                    {
                        "id": 1234,
                        "signals": {"pdq": pdq(3)},
                        "metadata": {"content_id": "c-3", "json": {"note": "n", "tags": ["A1"]}},
                    }
                ),
                json.dumps({"id": 99, "signals": {"pdq": pdq(4)}}),
                json.dumps({"signals": {}}),
            ]
        )
        + "\n"
    )
    r = import_entries(banks, "B", p, format="hma")
    assert r.added == 5
    assert [(x.line_no, x.reason) for x in r.rejections] == [
        (2, "unknown signal type 'tmk'"),
        (5, 'missing value: empty "signals" object'),
    ]
    assert banks.find_entry("B", "md5", md5(1)).value == md5(1)
    e3 = banks.find_entry("B", "pdq", pdq(3))
    assert (e3.external_id, e3.note, e3.categories) == ("c-3", "n", ("A1",))
    assert banks.find_entry("B", "pdq", pdq(4)).external_id == "99"


def test_python_threatexchange_dataset_csv_and_te_text(banks: Banks, tmp_path: Path) -> None:
    """`threatexchange dataset -P --csv` header and `threatexchange hash` / `dataset -P -S` lines."""
    banks.create_bank("B")
    p = tmp_path / "collab.csv"
    p.write_text(
        "signal_type,signal_str,collab,category,tags\n"
        f"pdq,{pdq(1)},Sample Collab,POSITIVE_CLASS,tag1 tag2\n"
        f"video_md5,{md5(1)},Sample Collab,INVESTIGATION_SEED,\n"
    )
    r = import_entries(banks, "B", p)
    assert (r.added, r.rejected) == (2, 0)
    e = banks.find_entry("B", "pdq", pdq(1))
    assert (e.source, e.categories) == ("Sample Collab", ("POSITIVE_CLASS", "tag1", "tag2"))
    t = tmp_path / "hashes.txt"
    t.write_text(f"pdq {pdq(5)}\nROTATE90 pdq {pdq(6)}\n md5 {md5(7)}\n")
    r2 = import_entries(banks, "B", t)
    assert (r2.format, r2.added, r2.rejected) == ("te", 3, 0)
    assert banks.find_entry("B", "pdq", pdq(6)).note == "ROTATE90"


def test_json_documents_stream_elements(banks: Banks, tmp_path: Path) -> None:
    banks.create_bank("B")
    arr = tmp_path / "a.json"
    arr.write_text(
        "[\n"
        + ",\n".join(
            [json.dumps({"signal_type": "md5", "value": md5(i)}, indent=1) for i in range(3)]
            + ['"not an object"', json.dumps({"signal_type": "md5", "value": "abc"})]
        )
        + "\n]\n"
    )
    r = import_entries(banks, "B", arr)
    assert r.format == "json" and r.added == 3
    # Elements are 4 lines each when indented; line numbers point at each element's start.
    assert [(x.line_no, x.reason) for x in r.rejections] == [
        (14, "expected a JSON object, got str"),
        (15, "md5: wrong length 3, expected 32 hex digits"),
    ]
    te_api = tmp_path / "te.json"
    te_api.write_text(
        json.dumps(
            {
                "data": [
                    {"id": "111", "raw_indicator": pdq(1), "type": "HASH_PDQ", "tags": ["x"]},
                    {"id": "112", "raw_indicator": md5(9), "type": "HASH_MD5"},
                    {"id": "113", "raw_indicator": "http://example.com", "type": "URI"},
                ],
                "paging": {"cursors": {"after": "abc"}},
            }
        )
    )
    r2 = import_entries(banks, "B", te_api)
    assert r2.added == 2 and [x.reason for x in r2.rejections] == [
        "unknown signal type 'URI' (known: md5, pdq, sha256, vpdq)"
        if "vpdq" in _known()
        else "unknown signal type 'URI' (known: md5, pdq, sha256)"
    ]
    assert banks.find_entry("B", "pdq", pdq(1)).external_id == "111"
    bad = tmp_path / "bad.json"
    bad.write_text('[{"signal_type": "md5", "value": "' + md5(50) + '"},\n{"oops"\n]')
    with pytest.raises(ImportFormatError, match="line 3: bad JSON: Expecting ':' delimiter"):
        import_entries(banks, "B", bad)
    assert banks.get_bank("B").entry_counts["active"] == 5  # nothing from bad.json
    for text, match in [("{}", '"data" array'), ("42", "expected a JSON array"), ("[] x", "extra")]:
        bad.write_text(text)
        with pytest.raises(ImportFormatError, match=match):
            import_entries(banks, "B", bad)


def _known() -> set[str]:
    from lifeguard.signals.base import SIGNAL_TYPES

    return set(SIGNAL_TYPES)


def _fill(banks: Banks) -> None:
    banks.create_bank("SRC", categories=["A1"])
    for i in range(12):
        banks.add_entry(
            "SRC",
            "pdq" if i % 2 else "md5",
            pdq(i) if i % 2 else md5(i),
            quality=None if i % 3 else 80 + i,
            source=f"list, {i % 2}",
            external_id=f"ext-{i}" if i % 4 else "",
            note='quote " comma , tab\tnewline\n' if i == 3 else f"note {i}",
            categories=["A1", "B2"] if i % 2 else [],
            added_by="alice",
            variants={"rot90": pdq(100 + i)} if i == 5 else None,
        )
    ents = banks.list_entries("SRC").items
    banks.disable_entry(ents[1].id, by="bob", reason="check")
    banks.remove_entry(ents[2].id, by="bob", reason="fp")


def _key(e: EntryInfo, full: bool) -> tuple[object, ...]:
    if not full:
        return (e.signal_type, e.value)
    return (
        e.signal_type, e.value, e.quality, e.source, e.external_id, e.note, e.categories,
        e.added_at, e.added_by, e.status, dict(e.variants),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "full"),
    [("csv", True), ("tsv", True), ("jsonl", True), ("json", True), ("hma", True),
     ("te", False), ("plain", False)],
)  # fmt: skip
def test_round_trip(banks: Banks, tmp_path: Path, fmt: str, full: bool) -> None:
    _fill(banks)
    banks.create_bank("DST")
    everything = fmt not in ("plain", "te")
    kw = {"include_disabled": everything, "include_removed": everything}
    types = ["md5", "pdq"] if fmt == "plain" else [None]
    for st in types:
        out = tmp_path / f"export-{st}.{fmt}"
        res = export_bank(banks, "SRC", out, format=fmt, signal_type=st, **kw)
        import_entries(banks, "DST", out, format=fmt, signal_type=st)
        assert res.rows > 0
    src = banks.list_entries("SRC", limit=1000).items
    if not everything:
        src = tuple(e for e in src if e.status == "active")
    dst = banks.list_entries("DST", limit=1000).items
    assert len(dst) == len(src) == (12 if everything else 10)
    assert sorted(_key(e, full) for e in dst) == sorted(_key(e, full) for e in src)
    # Exporting again after re-import gives the same bytes (for the same entry order).
    if fmt in ("csv", "jsonl"):
        a, b = io.StringIO(), io.StringIO()
        export_bank(banks, "SRC", a, format=fmt, **kw)
        export_bank(banks, "DST", b, format=fmt, **kw)
        assert sorted(a.getvalue().splitlines()) == sorted(b.getvalue().splitlines())


def test_export_options_gzip_and_plain_needs_one_type(banks: Banks, tmp_path: Path) -> None:
    _fill(banks)
    out = tmp_path / "x.csv.gz"
    assert export_bank(banks, "SRC", out).rows == 10  # active only by default
    with gzip.open(out, "rt") as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("signal_type,value,external_id,source,note,categories")
    assert export_bank(banks, "SRC", io.StringIO(), include_disabled=True).rows == 11
    assert export_bank(banks, "SRC", io.StringIO(), include_removed=True).rows == 11
    assert export_bank(banks, "SRC", io.StringIO(), signal_type="pdq").rows == 5
    with pytest.raises(InvalidField, match="holds md5, pdq signals: plain text has no type"):
        export_bank(banks, "SRC", tmp_path / "x.txt")
    buf = io.StringIO()
    export_bank(banks, "SRC", buf, format="te")
    assert all(line.split()[0] in ("md5", "pdq") for line in buf.getvalue().splitlines())


def test_reference_haystack_imports_cleanly(banks: Banks) -> None:
    """Meta's reference PDQ list (1,350 hashes, one per line) as plain text."""
    path = TE_DATA / "pdq-data" / "reg-test-input" / "haystack.txt"
    if not path.exists():
        pytest.skip("shared ThreatExchange data not present")
    banks.create_bank("HAYSTACK")
    r = import_entries(banks, "HAYSTACK", path, format="plain", signal_type="pdq")
    distinct = {line.split()[0].lower() for line in path.read_text().splitlines() if line.strip()}
    assert r.rejected == 0 and r.added == len(distinct)


def test_vpdq_round_trip_when_registered(banks: Banks, tmp_path: Path) -> None:
    video = pytest.importorskip("lifeguard.signals.video")
    if "vpdq" not in _known():
        pytest.skip("vpdq signal type not registered")
    frames = f"0,100,{pdq(1)},0.000\n1,90,{pdq(2)},1.000"
    value = video.VpdqSignal.validate(frames)
    banks.create_bank("V")
    banks.add_entry("V", "vpdq", value)
    for fmt in ("csv", "jsonl", "te"):
        buf = io.StringIO()
        export_bank(banks, "V", buf, format=fmt)
        banks.create_bank(f"V_{fmt}")
        r = import_entries(banks, f"V_{fmt}", io.StringIO(buf.getvalue()), format=fmt)
        assert r.added == 1, r.rejections
        assert banks.find_entry(f"V_{fmt}", "vpdq", value).value == value
