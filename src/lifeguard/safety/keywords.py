"""Keyword lists with obfuscation-aware matching.

Entries and messages are both folded with :func:`lifeguard.safety.normalize.tokens` (leetspeak,
spaced-out letters, repeated letters, homoglyphs, a few emoji, text-speak), then compared as
sequences of whole words:

* ``secret`` matches the word ``secret`` (also ``s3cr3t``, ``s e c r e t``, ``SECRET!!``), not
  ``secretary``;
* ``keep it between us`` matches those four words in a row (a phrase);
* a trailing ``*`` makes the last word a prefix: ``secret*`` matches ``secrets`` and ``secretly``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from lifeguard.errors import LifeguardError
from lifeguard.safety.normalize import tokens

MAX_KEYWORD = 200
MAX_WORDS: Final = 12


class InvalidKeyword(LifeguardError):
    code = "invalid_keyword"


@dataclass(frozen=True, slots=True)
class Keyword:
    #: The canonical form stored in lists: folded words, with ``*`` when the last is a prefix.
    key: str
    words: tuple[str, ...]
    prefix: bool


def parse_keyword(value: str) -> Keyword:
    """A list entry: folded to whole words; ``*`` allowed only at the very end."""
    if not isinstance(value, str):
        raise InvalidKeyword(f"expected a string, got {type(value).__name__}")
    raw = value.strip()
    if not raw:
        raise InvalidKeyword("empty keyword")
    if len(raw) > MAX_KEYWORD:
        raise InvalidKeyword(f"{len(raw)} characters, at most {MAX_KEYWORD}")
    prefix = raw.endswith("*")
    body = raw[:-1] if prefix else raw
    if "*" in body:
        raise InvalidKeyword("'*' is allowed only at the end (a prefix)")
    if prefix and (not body or body[-1].isspace()):
        raise InvalidKeyword("'*' must follow a word (like secret*)")
    words = tuple(tokens(body))
    if not words:
        raise InvalidKeyword(f"{value!r} has no letters or digits once folded")
    if len(words) > MAX_WORDS:
        raise InvalidKeyword(f"{len(words)} words, at most {MAX_WORDS}")
    return Keyword(" ".join(words) + ("*" if prefix else ""), words, prefix)


@dataclass(frozen=True, slots=True)
class KeywordRef:
    list_name: str
    key: str
    category: str = ""


@dataclass(frozen=True, slots=True)
class KeywordMatch:
    #: The folded words of the message that matched.
    found: str
    #: Index of the first matching word in the folded message.
    word: int
    entry: KeywordRef

    def to_json(self) -> dict[str, str | int]:
        return {
            "found": self.found,
            "word": self.word,
            "list": self.entry.list_name,
            "entry": self.entry.key,
            "category": self.entry.category,
        }


class KeywordMatcher:
    """Keywords of one or more lists, indexed by their first word (or first word's prefix)."""

    def __init__(self) -> None:
        #: first word -> [(words, prefix, ref)] for entries whose first word is exact.
        self._exact: dict[str, list[tuple[tuple[str, ...], bool, KeywordRef]]] = {}
        #: prefix -> refs for one-word prefix entries (``secret*``).
        self._prefix: dict[str, list[KeywordRef]] = {}
        self._prefix_lengths: list[int] = []
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, list_name: str, key: str, category: str = "") -> None:
        """Add an entry by its canonical key (as :func:`parse_keyword` gives)."""
        kw = parse_keyword(key)
        ref = KeywordRef(list_name, kw.key, category)
        self.size += 1
        if kw.prefix and len(kw.words) == 1:
            self._prefix.setdefault(kw.words[0], []).append(ref)
            if len(kw.words[0]) not in self._prefix_lengths:
                self._prefix_lengths.append(len(kw.words[0]))
                self._prefix_lengths.sort()
        else:
            self._exact.setdefault(kw.words[0], []).append((kw.words, kw.prefix, ref))

    def add_all(self, entries: Iterable[tuple[str, str, str]]) -> None:
        for e in entries:
            self.add(*e)

    def match_tokens(self, words: list[str]) -> list[KeywordMatch]:
        out: list[KeywordMatch] = []
        exact, prefix, lengths = self._exact, self._prefix, self._prefix_lengths
        n = len(words)
        for i, w in enumerate(words):
            cands = exact.get(w)
            if cands is not None:
                for kws, is_prefix, ref in cands:
                    k = len(kws)
                    if i + k > n:
                        continue
                    if is_prefix:
                        ok = tuple(words[i : i + k - 1]) == kws[:-1] and words[
                            i + k - 1
                        ].startswith(kws[-1])
                    else:
                        ok = k == 1 or tuple(words[i : i + k]) == kws
                    if ok:
                        out.append(KeywordMatch(" ".join(words[i : i + k]), i, ref))
            if prefix:
                for length in lengths:
                    if length > len(w):
                        break
                    for ref in prefix.get(w[:length], ()):
                        out.append(KeywordMatch(w, i, ref))
        return out

    def match_text(self, text: str) -> list[KeywordMatch]:
        """Every entry found in ``text`` (folded first), in order of position."""
        return self.match_tokens(tokens(text))
