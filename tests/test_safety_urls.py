"""URL lists: canonicalisation, finding URLs in text, matching, and list import/export in the
database (SQLite and PostgreSQL)."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from lifeguard.errors import ImportFormatError, NotFound
from lifeguard.reports.models import AuditRecord
from lifeguard.safety.lists import ListCache, SafetyLists
from lifeguard.safety.models import SafetyListEntry, SafetyListImport
from lifeguard.safety.urls import (
    InvalidURL,
    UrlMatcher,
    canonicalize,
    deobfuscate,
    find_urls,
    parse_entry,
)
from lifeguard.store.db import Database
from lifeguard.store.models import Base

MY_TABLES = {"safety_list", "safety_list_entry", "safety_list_import", "safety_list_rejection"}


# ----------------------------------------------------------------------------- canonical form
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://example.com/a", "HTTPS://EXAMPLE.com/a"),  # scheme and host case
        ("http://www.example.com/a", "example.com/a"),  # www., no scheme
        ("http://example.com/a/", "http://example.com/a"),  # trailing slash
        ("http://example.com", "http://example.com/"),
        ("http://example.com:80/a", "https://example.com:443/a"),  # default ports
        ("http://example.com/a?b=2&a=1", "http://example.com/a?a=1&b=2"),  # query order
        ("http://example.com/a?a=1&&b=2&", "http://example.com/a?b=2&a=1"),  # empty params
        ("http://example.com/%7Euser", "http://example.com/~user"),  # unreserved decoded
        ("http://example.com/a%2fb", "http://example.com/a/b"),
        ("http://example.com/%e2%82%ac", "http://example.com/€"),  # hex case, UTF-8
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),  # dot segments
        ("http://example.com//a///b", "http://example.com/a/b"),
        ("http://example.com/a#frag", "http://example.com/a"),  # fragment
        ("http://user:pw@example.com/a", "http://example.com/a"),  # user info
        ("http://example.com./a", "http://example..com/a"),  # dots
        ("http://bücher.de/x", "http://xn--bcher-kva.de/x"),  # IDN
        ("http://BÜCHER.de/x", "http://xn--bcher-kva.de/x"),
        ("hxxps://example.com/a", "http://example.com/a"),  # defanged scheme
        ("http://example.com/%2525", "http://example.com/%25"),  # double encoding
    ],
)
def test_equivalent_spellings_share_a_key(a: str, b: str) -> None:
    assert canonicalize(a) == canonicalize(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://example.com/A", "http://example.com/a"),  # paths are case-sensitive
        ("http://example.com:8080/a", "http://example.com/a"),  # other ports differ
        ("http://example.com/a?x=1", "http://example.com/a?x=2"),
        ("http://sub.example.com/a", "http://example.com/a"),
        ("http://example.com/a?x", "http://example.com/a?x="),
    ],
)
def test_different_resources_differ(a: str, b: str) -> None:
    assert canonicalize(a) != canonicalize(b)


def test_canonical_key_shape() -> None:
    assert (
        canonicalize("HTTP://WWW.Example.COM:80/a/./b/../c/?b=2&a=1#x") == "example.com/a/c?a=1&b=2"
    )
    assert canonicalize("https://例え.テスト/パス").startswith("xn--r8jz45g.xn--zckzah/%E3%83%91")
    assert canonicalize("http://[::1]:8080/x") == "[::1]:8080/x"
    assert canonicalize("www.com") == "www.com"  # a bare www.<tld> keeps its label


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "ftp://example.com/x",
        "http://",
        "http://exa mple.com/",
        "http://-x-.com/",
        "http://a.b:99999/x",
    ],
)
def test_invalid_urls(bad: str) -> None:
    with pytest.raises(InvalidURL):
        canonicalize(bad)


def test_entries() -> None:
    assert parse_entry("http://example.com/p.JPG").kind == "image"
    assert parse_entry("http://example.com/p").kind == "page"
    assert parse_entry("example.com").kind == "page"  # a bare host is the front page only
    d = parse_entry("www.Example.com", "domain")
    assert (d.kind, d.key) == ("domain", "example.com")
    with pytest.raises(InvalidURL, match="path"):
        parse_entry("example.com/x", "domain")
    with pytest.raises(InvalidURL, match="kind"):
        parse_entry("example.com", "folder")


# ------------------------------------------------------------------------------ text and match
def test_find_urls_in_text() -> None:
    text = (
        "look at https://foo.example/x). also www.test.org, mail me at bob@mail.com, "
        "then (see example.net/a?b=1) and hxxp://defanged.example/p"
    )
    found = find_urls(text)
    assert "https://foo.example/x" in found
    assert "www.test.org" in found
    assert "example.net/a?b=1" in found
    assert "hxxp://defanged.example/p" in found
    assert not any("mail.com" in f for f in found)  # e-mail addresses are not URLs


def test_obfuscated_urls() -> None:
    assert deobfuscate("bad[.]site(dot)net") == "bad.site.net"
    assert deobfuscate("go to example dot com slash abc") == "go to example.com/abc"
    found = find_urls("go to example dot com slash abc or evil [.] example [.] org")
    assert "example.com/abc" in found and "evil.example.org" in found
    assert find_urls("example dot com", obfuscated=False) == []


def test_matcher_pages_images_and_domains() -> None:
    m = UrlMatcher()
    for kind, value in (
        ("page", "http://listed.example/gallery/1"),
        ("image", "http://img.listed.example/a.jpg"),
        ("domain", "whole.example"),
    ):
        e = parse_entry(value, kind)
        m.add("iwf", e.kind, e.key, "cat-a")
    hits = m.match_text(
        "LISTED.example/gallery/1/ and https://www.img.listed.example/a.jpg#x "
        "and deep.sub.whole[.]example/anything?q=1 and listed.example/gallery/2 and "
        "notwhole.example/x"
    )
    got = {(h.entry.kind, h.canonical) for h in hits}
    assert got == {
        ("page", "listed.example/gallery/1"),
        ("image", "img.listed.example/a.jpg"),
        ("domain", "deep.sub.whole.example/anything?q=1"),
    }
    assert all(h.entry.category == "cat-a" and h.entry.list_name == "iwf" for h in hits)
    assert m.match_text("nothing here, just words. And a sentence.end") == []
    # one URL written twice (and the spelled-out "www dot" form read both ways): one match
    twice = m.match_text("listed.example/gallery/1 www dot listed.example/gallery/1")
    assert len(twice) == 1
    assert len(m) == 3


# --------------------------------------------------------------------------- lists in the db
URL_FILE = """\
# supplier list, 2026-11-25
http://listed.example/gallery/1
https://WWW.listed.example/gallery/1/\tpage
http://img.listed.example/a.jpg\t-\tcat-a
whole.example\tdomain\tcat-b
ftp://bad.example/x
http://listed.example/two\tfolder
whole.example/x\tdomain

http://listed.example/three  image  cat-c
"""


def _import(lists: SafetyLists, text: str, **kw: Any) -> Any:
    return lists.import_file("iwf", io.StringIO(text), source_name="iwf.txt", **kw)


def test_import_reports_every_bad_line_and_is_idempotent(db: Database) -> None:
    lists = SafetyLists(db)
    with pytest.raises(ImportFormatError, match="kind"):
        _import(lists, URL_FILE)  # a new list needs its kind
    r = _import(lists, URL_FILE, kind="url")
    assert (r.lines, r.added, r.duplicates, r.rejected) == (10, 4, 1, 3)
    assert [(x.line_no, x.text.split()[0]) for x in r.rejections] == [
        (6, "ftp://bad.example/x"),
        (7, "http://listed.example/two"),
        (8, "whole.example/x"),
    ]
    reasons = [x.reason for x in r.rejections]
    assert "scheme" in reasons[0] and "folder" in reasons[1] and "path" in reasons[2]
    assert [x.line_no for x in lists.rejections(r.job_id)] == [6, 7, 8]
    info = lists.info("iwf")
    assert info.entries == 4 and info.kind == "url"
    again = _import(lists, URL_FILE)
    assert (again.added, again.duplicates, again.rejected) == (0, 5, 3)
    assert lists.info("iwf").rev == info.rev  # nothing changed
    urls, _ = lists.load_matchers()
    assert {(h.entry.kind, h.entry.category) for h in urls.match_text("see x.whole.example/y")} == {
        ("domain", "cat-b")
    }
    assert urls.match_text("listed.example/three")[0].entry.kind == "image"


def test_replace_removes_what_the_file_no_longer_has(db: Database) -> None:
    lists = SafetyLists(db)
    _import(lists, "http://a.example/1\nhttp://a.example/2\nb.example domain\n", kind="url")
    r = _import(lists, "http://a.example/2\nhttp://a.example/3\n", replace=True)
    assert (r.added, r.duplicates, r.removed) == (1, 1, 2)
    exported = "".join(lists.export_lines("iwf"))
    assert "a.example/1" not in exported and "b.example" not in exported
    with db.session() as s:
        recs = s.execute(
            select(AuditRecord).where(AuditRecord.action == "safety_list_import")
        ).scalars()
        details = [json.loads(r.details_json) for r in recs]
    assert [(d["mode"], d["added"], d["removed"]) for d in details] == [
        ("add", 3, 0),
        ("replace", 1, 2),
    ]
    assert "a.example" not in json.dumps(details)  # counts only, never entries
    assert exported.splitlines()[1:] == ["a.example/2\tpage", "a.example/3\tpage"]


def test_import_is_atomic(db: Database) -> None:
    lists = SafetyLists(db)
    _import(lists, "http://a.example/1\n", kind="url")

    class Boom(io.StringIO):
        def __iter__(self) -> Any:
            yield "http://a.example/2\n"
            yield "http://a.example/3\n"
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        lists.import_file("iwf", Boom(), source_name="boom.txt")
    assert lists.info("iwf").entries == 1
    jobs = lists.imports("iwf")
    assert jobs[0]["status"] == "failed" and "disk gone" in jobs[0]["error"]
    assert jobs[1]["status"] == "done"
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(SafetyListImport)).scalar_one() == 2


def test_export_round_trips_and_gzip_and_bad_utf8(db: Database, tmp_path: Path) -> None:
    lists = SafetyLists(db)
    _import(lists, URL_FILE, kind="url")
    exported = "".join(lists.export_lines("iwf"))
    p = tmp_path / "copy.txt.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write(exported)
    r = lists.import_file("copy", p, kind="url")
    assert (r.added, r.rejected) == (4, 0)
    assert "".join(lists.export_lines("copy")).splitlines()[1:] == exported.splitlines()[1:]
    r = lists.import_file("copy", io.BytesIO(b"http://ok.example/1\n\xff\xfe\n"), source_name="b")
    assert r.added == 1 and r.rejections[0].line_no == 2 and "UTF-8" in r.rejections[0].reason
    with pytest.raises(NotFound):
        lists.info("nope")
    with pytest.raises(ImportFormatError, match="is a url list"):
        lists.import_file("copy", io.StringIO("x\n"), kind="keyword")


def test_cache_reloads_on_change(db: Database) -> None:
    lists = SafetyLists(db)
    cache = ListCache(lists, ttl_s=0)
    assert cache.get()[0].match_text("a.example/1") == []
    _import(lists, "http://a.example/1\n", kind="url")
    assert len(cache.get()[0].match_text("a.example/1")) == 1
    lists.delete("iwf")
    assert cache.get()[0].match_text("a.example/1") == []


def test_migration_0010_matches_the_models(db: Database) -> None:
    with db.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)

    def table_of(d: Any) -> str | None:
        op = d[0] if isinstance(d, tuple) else d[0][0]
        obj = d[1] if isinstance(d, tuple) else d[0][2]
        if op in ("add_table", "remove_table"):
            return str(obj.name)
        if op in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
            return str(obj.table.name)
        if op in ("add_column", "remove_column"):
            return str(d[2])
        return str(d[0][2]) if not isinstance(d, tuple) else None

    mine = [d for d in diff if table_of(d) in MY_TABLES]
    assert mine == []
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(SafetyListEntry)).scalar_one() == 0
