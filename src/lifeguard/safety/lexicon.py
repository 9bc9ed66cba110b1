"""The tactic lexicon: hand-written phrase patterns per tactic, matched on folded text.

Patterns live in ``data/lexicon.json`` (the syntax is described there). Each pattern compiles to
one regular expression over :func:`lifeguard.safety.normalize.fold` output; every literal word of
a pattern is folded with the same function, so patterns are written in plain English and still
match obfuscated text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from lifeguard.errors import LifeguardError
from lifeguard.safety.normalize import fold

__all__ = [
    "GROOMING_TACTICS",
    "SEXTORTION_TACTICS",
    "TACTICS",
    "Lexicon",
    "LexiconError",
    "LexiconHit",
    "compile_pattern",
    "default_lexicon",
]

GROOMING_TACTICS = (
    "age",
    "secrecy",
    "isolation",
    "photo_request",
    "sexualisation",
    "gifts",
    "meeting",
)
SEXTORTION_TACTICS = ("threat_share", "payment_demand", "deadline", "claims_images")
TACTICS = GROOMING_TACTICS + SEXTORTION_TACTICS

_CLASSES = {
    "#num": r"[0-9]+",
    "#minor": r"(?:[5-9]|1[0-7])",
    "#adult": r"(?:1[89]|[2-9][0-9])",
}
_WORD = r"[a-z0-9]+"


class LexiconError(LifeguardError):
    """A lexicon file or pattern is malformed."""

    code = "invalid_lexicon"


@dataclass(frozen=True)
class LexiconHit:
    tactic: str
    pattern: str
    match: str  # the folded words that matched


def _alt_regex(alt: str, pattern: str) -> str:
    parts: list[str] = []
    for word in alt.split("_"):
        if word in _CLASSES:
            parts.append(_CLASSES[word])
            continue
        prefix = word.endswith("*")
        folded = fold(word[:-1] if prefix else word)
        if not folded:
            raise LexiconError(f"pattern {pattern!r}: {word!r} folds to nothing")
        rx = re.escape(folded)
        parts.append(rx + "[a-z0-9]*" if prefix else rx)
    return " ".join(parts)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """One lexicon pattern -> a regular expression to search in ``fold(text) + " "``."""
    slots = pattern.split()
    if not slots or slots[0].startswith("~") or slots[-1].startswith("~"):
        raise LexiconError(f"pattern {pattern!r}: must start and end with words")
    out: list[str] = []
    for slot in slots:
        if slot.startswith("~"):
            n, _, banned = slot[1:].partition("!")
            n = n or "3"
            if not n.isdigit():
                raise LexiconError(f"pattern {pattern!r}: bad gap {slot!r}")
            word = _WORD
            if banned:
                no = "|".join(re.escape(fold(w)) for w in banned.split(",") if fold(w))
                word = f"(?!(?:{no}) ){_WORD}"
            out.append(f"(?:{word} ){{0,{int(n)}}}")
            continue
        alts = [a for a in slot.split("|") if a]
        if not alts:
            raise LexiconError(f"pattern {pattern!r}: empty slot")
        body = "|".join(sorted({_alt_regex(a, pattern) for a in alts}, key=len, reverse=True))
        out.append(f"(?:{body}) ")
    return re.compile(r"(?<![a-z0-9])" + "".join(out))


class Lexicon:
    """Compiled patterns per tactic. ``hits(folded)`` lists what matched."""

    def __init__(self, spec: dict[str, Any]) -> None:
        tactics = spec.get("tactics")
        if not isinstance(tactics, dict):
            raise LexiconError("lexicon: 'tactics' must be an object")
        self.patterns: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
        for tactic, body in tactics.items():
            if tactic not in TACTICS:
                raise LexiconError(f"lexicon: unknown tactic {tactic!r}")
            pats = body.get("patterns") if isinstance(body, dict) else None
            if not isinstance(pats, list) or not all(isinstance(p, str) for p in pats):
                raise LexiconError(f"lexicon: {tactic}.patterns must be a list of strings")
            self.patterns[tactic] = [(p, compile_pattern(p)) for p in pats]
        self.version = int(spec.get("version", 0))
        # cue name -> (tactics it cancels, patterns); "*" cancels every tactic
        self.cues: dict[str, tuple[frozenset[str], list[re.Pattern[str]]]] = {}
        cues = spec.get("cues", {})
        if not isinstance(cues, dict):
            raise LexiconError("lexicon: 'cues' must be an object")
        for name, body in cues.items():
            if name == "description":
                continue
            if not isinstance(body, dict):
                raise LexiconError(f"lexicon: cue {name!r} must be an object")
            cancels = body.get("cancels", [])
            pats = body.get("patterns", [])
            if not isinstance(cancels, list) or not isinstance(pats, list):
                raise LexiconError(f"lexicon: cue {name!r} needs 'cancels' and 'patterns' lists")
            bad = set(cancels) - set(TACTICS) - {"*"}
            if bad:
                raise LexiconError(f"lexicon: cue {name!r} cancels unknown tactics {sorted(bad)}")
            tac = frozenset(TACTICS) if "*" in cancels else frozenset(cancels)
            self.cues[name] = (tac, [compile_pattern(p) for p in pats])
        # tactic -> (tactics of which the same sender must already show one, patterns)
        self.context: dict[str, tuple[frozenset[str], list[tuple[str, re.Pattern[str]]]]] = {}
        context = spec.get("context", {})
        if not isinstance(context, dict):
            raise LexiconError("lexicon: 'context' must be an object")
        for tactic, body in context.items():
            if tactic == "description":
                continue
            if tactic not in TACTICS or not isinstance(body, dict):
                raise LexiconError(f"lexicon: context {tactic!r} must be a known tactic's object")
            req, pats = body.get("requires", []), body.get("patterns", [])
            if not isinstance(req, list) or not isinstance(pats, list) or not req:
                raise LexiconError(f"lexicon: context {tactic!r} needs 'requires' and 'patterns'")
            bad = set(req) - set(TACTICS)
            if bad:
                raise LexiconError(f"lexicon: context {tactic!r} requires unknown {sorted(bad)}")
            self.context[tactic] = (frozenset(req), [(p, compile_pattern(p)) for p in pats])

    def cancelled(self, folded: str) -> frozenset[str]:
        """Tactics whose lexicon hits a cue in this message cancels (advice, surprises)."""
        text = folded + " "
        out: set[str] = set()
        for tactics, pats in self.cues.values():
            if any(rx.search(text) for rx in pats):
                out |= tactics
        return frozenset(out)

    def hits(self, folded: str, *, apply_cues: bool = True) -> list[LexiconHit]:
        """Every tactic with its first matching pattern in already-folded text (less the
        tactics a cue in the same message cancels, unless ``apply_cues`` is false)."""
        text = folded + " "
        out: list[LexiconHit] = []
        skip = self.cancelled(folded) if apply_cues else frozenset()
        for tactic, pats in self.patterns.items():
            if tactic in skip:
                continue
            for src, rx in pats:
                m = rx.search(text)
                if m:
                    out.append(LexiconHit(tactic, src, m.group(0).strip()))
                    break
        return out

    def context_hits(self, folded: str) -> dict[str, frozenset[str]]:
        """Tactics whose context patterns match (less cue-cancelled ones), each with the
        tactics of which the sender must already show one for the hit to count."""
        text = folded + " "
        skip = self.cancelled(folded)
        out: dict[str, frozenset[str]] = {}
        for tactic, (req, pats) in self.context.items():
            if tactic not in skip and any(rx.search(text) for _, rx in pats):
                out[tactic] = req
        return out

    def tactics(self, text: str) -> set[str]:
        """The tactics whose patterns match ``text`` (folded here)."""
        return {h.tactic for h in self.hits(fold(text))}


@cache
def default_lexicon() -> Lexicon:
    """The lexicon shipped in ``lifeguard/safety/data/lexicon.json``."""
    raw = resources.files("lifeguard.safety").joinpath("data/lexicon.json").read_text("utf-8")
    spec = json.loads(raw)
    if not isinstance(spec, dict):
        raise LexiconError("lexicon: top level must be an object")
    return Lexicon(spec)
