"""Assemble synthetic, NON-EXPLICIT conversations from phrase banks (train and eval use disjoint
banks; this module only holds the assembly and the obfuscation an adversary would apply).

A conversation is a JSON object::

    {"id": ..., "kind": "grooming" | "sextortion" | "hard_negative" | "neutral",
     "category": ..., "flag": bool, "sextortion": bool, "source": "template" | "handwritten",
     "participants": [{"id": "a", "role": "contact", "age_band": "adult"}, ...],
     "messages": [{"id": "m1", "sender": "a", "text": ..., "t": 0, "tactics": [...]}, ...]}
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Line = str
Conversation = dict[str, Any]

_HOMO = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і", "s": "ѕ"}
_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
_EMOJI = {
    "photo": "📸",
    "photos": "📸📸",
    "picture": "📷",
    "pic": "📷",
    "secret": "🤫",
    "money": "💸",
    "gift": "🎁",
}


def obfuscate(text: str, rng: random.Random) -> str:
    """One random obfuscation applied to one or more words of ``text``."""
    words = text.split(" ")
    cand = [i for i, w in enumerate(words) if len(re.sub(r"[^A-Za-z]", "", w)) >= 4]
    if not cand:
        cand = list(range(len(words)))
    how = rng.choice(["leet", "spaced", "repeat", "homoglyph", "emoji", "zw", "caps", "dots"])
    targets = rng.sample(cand, k=min(len(cand), rng.randint(1, 3)))
    for i in targets:
        w = words[i]
        if how == "leet":
            w = "".join(_LEET.get(c.lower(), c) if rng.random() < 0.7 else c for c in w)
        elif how == "spaced":
            w = " ".join(w)
        elif how == "dots":
            w = rng.choice([".", "-", "_", "*"]).join(w)
        elif how == "repeat":
            w = "".join(c * rng.randint(2, 4) if c.lower() in "aeiouy" else c for c in w)
        elif how == "homoglyph":
            w = "".join(_HOMO.get(c, c) for c in w)
        elif how == "emoji":
            key = re.sub(r"[^a-z]", "", w.lower())
            w = _EMOJI.get(key, w)
        elif how == "zw":
            w = "\u200b".join(w)
        elif how == "caps":
            w = w.upper()
        words[i] = w
    return " ".join(words)


def fill(template: str, slots: dict[str, Sequence[str]], rng: random.Random) -> str:
    """Replace ``{name}`` with a random value from ``slots[name]``."""

    def sub(m: re.Match[str]) -> str:
        return rng.choice(slots[m.group(1)])

    return re.sub(r"\{(\w+)\}", sub, template)


@dataclass
class Builder:
    """Accumulates messages for one conversation."""

    rng: random.Random
    slots: dict[str, Sequence[str]]
    obfuscate_share: float = 0.0
    messages: list[dict[str, Any]] = field(default_factory=list)
    t: int = 0

    def say(
        self, sender: str, template: str, tactics: Iterable[str] = (), *, share: float = -1.0
    ) -> None:
        text = fill(template, self.slots, self.rng)
        tac = sorted(set(tactics))
        if share < 0:
            share = self.obfuscate_share if tac else 0.0
        if share and self.rng.random() < share:
            text = obfuscate(text, self.rng)
        self.t += self.rng.randint(5, 400)
        self.messages.append(
            {
                "id": f"m{len(self.messages) + 1}",
                "sender": sender,
                "text": text,
                "t": self.t,
                "tactics": tac,
                "template": zlib.crc32(template.encode("utf-8")),
            }
        )

    def filler(self, a_lines: Sequence[str], b_lines: Sequence[str], n: int) -> None:
        for _ in range(n):
            self.say("a", self.rng.choice(a_lines))
            self.say("b", self.rng.choice(b_lines))


def conversation(
    cid: str,
    kind: str,
    category: str,
    messages: list[dict[str, Any]],
    *,
    flag: bool,
    sextortion: bool = False,
    participants: list[dict[str, Any]] | None = None,
    source: str = "template",
) -> Conversation:
    return {
        "id": cid,
        "kind": kind,
        "category": category,
        "flag": flag,
        "sextortion": sextortion,
        "source": source,
        "participants": participants
        or [{"id": "a", "role": "contact"}, {"id": "b", "role": "user"}],
        "messages": messages,
    }


def write_jsonl(path: Path, convs: Iterable[Conversation]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for c in convs:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> list[Conversation]:
    out: list[Conversation] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
    return out


# ------------------------------------------------------------------------------ generation
GROOMING_ORDER = (
    "age",
    "sexualisation",
    "gifts",
    "secrecy",
    "isolation",
    "photo_request",
    "meeting",
)
CORE = ("secrecy", "isolation", "photo_request", "sexualisation", "meeting")


def _pick(rng: random.Random, lines: Sequence[Any]) -> Any:
    return lines[rng.randrange(len(lines))]


def grooming(banks: dict[str, Any], cid: str, rng: random.Random, obf: float) -> Conversation:
    """Smalltalk, then 2-5 tactics (at least one of CORE) in a plausible order with replies."""
    b = Builder(rng, banks["slots"], obfuscate_share=obf)
    b.say("a", _pick(rng, banks["open_a"]))
    b.say("b", _pick(rng, banks["open_b"]))
    b.filler(banks["small_a"], banks["small_b"], rng.randint(0, 3))
    k = rng.randint(2, 5)
    chosen = set(rng.sample(GROOMING_ORDER, k))
    if not chosen & set(CORE):
        chosen.add(rng.choice(CORE))
    order = [t for t in GROOMING_ORDER if t in chosen]
    if rng.random() < 0.3:
        i = rng.randrange(len(order) - 1)
        order[i], order[i + 1] = order[i + 1], order[i]
    for tactic in order:
        if rng.random() < 0.25 and banks.get("combos"):
            text, tacs = _pick(rng, banks["combos"])
            b.say("a", text, tacs)
        else:
            b.say("a", _pick(rng, banks["tactics"][tactic]), [tactic])
        if tactic == "age" and rng.random() < 0.8:
            b.say("b", _pick(rng, banks["child_age"]), ["age"])
            if rng.random() < 0.4:
                b.say("a", _pick(rng, banks["adult_age"]), ["age"])
        else:
            b.say("b", _pick(rng, banks["replies"]))
        b.filler(banks["small_a"], banks["small_b"], rng.choice([0, 0, 1, 1, 2]))
    band = rng.choice(["10-12", "13-15", "13-15", "16-17", None])
    parts: list[dict[str, Any]] = [{"id": "a", "role": "contact"}, {"id": "b", "role": "user"}]
    if band is not None and rng.random() < 0.5:
        parts[1]["age_band"] = band
    return conversation(cid, "grooming", "grooming", b.messages, flag=True, participants=parts)


def sextortion(banks: dict[str, Any], cid: str, rng: random.Random, obf: float) -> Conversation:
    """A short opener, then claims / payment / threat / deadline in one of several orders."""
    s = banks["sextortion"]
    b = Builder(rng, banks["slots"], obfuscate_share=obf)
    if rng.random() < 0.7:
        b.say("a", _pick(rng, s["opener_a"]))
        b.say("b", _pick(rng, s["opener_b"]))
    script = rng.choice(
        [
            ["claims_images", "payment_demand", "threat_share", "deadline"],
            ["claims_images", "threat_share", "payment_demand", "deadline"],
            ["threat_share", "payment_demand", "deadline"],
            ["claims_images", "threat_share", "payment_demand"],
            ["payment_demand", "threat_share", "deadline"],
            ["claims_images", "payment_demand", "deadline", "threat_share"],
            ["combo", "payment_demand", "threat_share"],
            ["claims_images", "combo", "deadline"],
        ]
    )
    for step in script:
        if step == "combo":
            text, tacs = _pick(rng, s["combos"])
            b.say("a", text, tacs)
        else:
            b.say("a", _pick(rng, s[step]), [step])
        if rng.random() < 0.75:
            b.say("b", _pick(rng, s["victim"]))
    return conversation(cid, "sextortion", "sextortion", b.messages, flag=True, sextortion=True)


def hard_negative(
    banks: dict[str, Any], category: str, cid: str, rng: random.Random, obf: float
) -> Conversation:
    """Ordinary lines of one category with 1-3 'tempting' lines (pick-ups, surprises, trash
    talk...) that share words with tactics but are not tactics."""
    h = banks["hard_negatives"][category]
    b = Builder(rng, banks["slots"], obfuscate_share=0.0)
    n = rng.randint(3, 8)
    tempting = rng.sample(range(n), k=min(n, rng.randint(1, 3)))
    for i in range(n):
        sender = "a" if i % 2 == 0 else "b"
        if i in tempting:
            b.say(sender, _pick(rng, h["tempting_" + sender]), share=obf)
        else:
            b.say(sender, _pick(rng, h[sender]))
    parts = [dict(p) for p in h.get("participants", [])] or None
    return conversation(cid, "hard_negative", category, b.messages, flag=False, participants=parts)


def generate(
    banks: dict[str, Any],
    *,
    prefix: str,
    seed: int,
    n_grooming: int,
    n_sextortion: int,
    n_per_negative: int,
    obfuscate_share: float = 0.25,
) -> list[Conversation]:
    rng = random.Random(seed)
    out: list[Conversation] = []
    for i in range(n_grooming):
        out.append(grooming(banks, f"{prefix}-groom-{i:03d}", rng, obfuscate_share))
    for i in range(n_sextortion):
        out.append(sextortion(banks, f"{prefix}-sext-{i:03d}", rng, obfuscate_share))
    for cat in sorted(banks["hard_negatives"]):
        for i in range(n_per_negative):
            out.append(
                hard_negative(banks, cat, f"{prefix}-neg-{cat}-{i:03d}", rng, obfuscate_share)
            )
    return out
