"""Keyword lists: obfuscation-aware whole-word and phrase matching, prefixes, list import."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import update

from lifeguard.safety.keywords import InvalidKeyword, KeywordMatcher, parse_keyword
from lifeguard.safety.lists import SafetyLists
from lifeguard.safety.models import SafetyListEntry
from lifeguard.safety.normalize import fold
from lifeguard.store.db import Database

# Benign stand-ins for the tactics keyword lists look for (secrecy, moving apps, age questions).
#: How the phrase is stored (folding collapses repeated letters: "keep" -> "kep").
KEEP = fold("keep it between us")
ENTRIES = ["secret", "keep it between us", "snap chat", "how old are you", "delete this*", "photo*"]


@pytest.fixture
def matcher() -> KeywordMatcher:
    m = KeywordMatcher()
    for e in ENTRIES:
        m.add("tactics", parse_keyword(e).key, "stand-in")
    return m


def keys(m: KeywordMatcher, text: str) -> list[str]:
    return [h.entry.key for h in m.match_text(text)]


@pytest.mark.parametrize(
    "text",
    [
        "this is our secret",
        "this is our S3CR3T!!",
        "this is our s e c r e t",
        "this is our seeecret",
        "this is our ѕесrеt",  # Cyrillic look-alikes
        "this is our 🤫",
    ],
)
def test_obfuscated_word_matches(matcher: KeywordMatcher, text: str) -> None:
    assert keys(matcher, text) == ["secret"]


def test_word_boundaries(matcher: KeywordMatcher) -> None:
    assert keys(matcher, "my secretary called") == []
    assert keys(matcher, "secrets") == []  # whole words only ...
    assert keys(matcher, "send ph0t0s") == ["photo*"]  # ... unless the entry is a prefix
    assert keys(matcher, "telephoto lens") == []  # a prefix is still anchored at a word start


def test_phrases(matcher: KeywordMatcher) -> None:
    assert keys(matcher, "Keep it between us, ok?") == [KEEP]
    assert keys(matcher, "keep it, between us") == [KEEP]  # punctuation is space
    assert keys(matcher, "keep between us") == []
    assert keys(matcher, "add me on snap chat") == ["snap chat"]
    assert keys(matcher, "how old r u") == ["how old are you"]  # text-speak folded
    assert keys(matcher, "please DELETE THIS conversation") == ["delete this*"]
    assert keys(matcher, "delete these") == []
    hits = matcher.match_text("secret: keep it between us")
    assert [(h.word, h.found) for h in hits] == [(0, "secret"), (1, KEEP)]


def test_parse_keyword_errors() -> None:
    assert parse_keyword("  Keep  IT ").key == fold("keep it") == parse_keyword("k33p it").key
    for bad, msg in (
        ("", "empty"),
        ("a*b", "only at the end"),
        ("word *", "follow a word"),
        ("!!!", "no letters"),
        ("x" * 201, "at most"),
    ):
        with pytest.raises(InvalidKeyword, match=msg):
            parse_keyword(bad)


def test_keyword_list_import(db: Database) -> None:
    lists = SafetyLists(db)
    text = "secret\tsecrecy\nkeep it between us\n# comment\n\na*b\nS3CR3T\nsnap chat\tmoving apps\n"
    r = lists.import_file("kw", io.StringIO(text), kind="keyword", source_name="kw.txt")
    assert (r.added, r.duplicates, r.rejected) == (3, 1, 1)
    assert r.rejections[0].line_no == 5 and "only at the end" in r.rejections[0].reason
    _, kws = lists.load_matchers()
    hits = kws.match_text("shh it's a s3cret, add me on snap chat")
    assert {(h.entry.key, h.entry.category) for h in hits} == {
        ("secret", "secrecy"),
        ("snap chat", "moving apps"),
    }
    exported = "".join(lists.export_lines("kw")).splitlines()[1:]
    # as the supplier wrote them (the first spelling of each), in canonical order
    assert sorted(exported) == ["keep it between us", "secret\tsecrecy", "snap chat\tmoving apps"]
    r = lists.import_file("kw", io.StringIO("\n".join(exported) + "\n"), source_name="again")
    assert (r.added, r.duplicates) == (0, 3)
    # matchers fold the supplier's text again at load: a stored folded form from an older
    # folding does not stop matches
    with db.session() as s:
        s.execute(
            update(SafetyListEntry).where(SafetyListEntry.raw == "secret").values(value="old-form")
        )
    _, kws = lists.load_matchers()
    assert [h.entry.key for h in kws.match_text("a s3cret")] == ["secret"]
