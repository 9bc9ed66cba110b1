"""Incremental conversation risk scoring for grooming and sextortion tactics.

``ConversationScorer().add(message)`` scores one message on arrival and returns the
conversation's :class:`Assessment` so far: a score in [0, 1], a level, the tactics found, the
ids of the messages that show them, and whether it looks like sextortion. Everything runs
locally (pure Python + numpy, no network) so it can run on a device or a server.

Per message, the text is folded (:mod:`lifeguard.safety.normalize`), matched against the tactic
lexicon (:mod:`lifeguard.safety.lexicon`) and scored by the tactic model
(:mod:`lifeguard.safety.model`). A tactic is found in a message when the model's probability
reaches the tactic's threshold, or when a lexicon pattern matched and the model does not veto it
(probability >= the tactic's veto, 0.02-0.1; threats to share images need no model agreement);
the sender's earlier tactics give context (see :meth:`ConversationScorer.message_tactics`). In
practice the lexicon finds and the model vetoes: the model was trained on look-alike ordinary
talk (pick-ups, surprise parties, game trash talk) labelled as no tactic, and its own recall on
unseen phrasings is low. Lexicon cues (advice and safety-education talk, surprises, photos of
things, negation) cancel lexicon hits in the same message.

Per conversation, tactics are counted per sender (age questions and answers count for every
sender) and combine as a noisy-or of per-tactic weights; the conversation's score is the highest
sender's. A disclosed age gap raises the weight of ``age``; an age gap with secrecy and a photo
request escalates; a threat to share images flags at once (``sextortion``), as does a claim to
hold images with a payment demand or a deadline. When every participant with a known age is a
minor (peers) or an adult, the grooming score is damped (x0.6). ``flagged`` is
``score >= flag_threshold`` (0.7): in effect two tactics of which one is not just age or gifts.

The state (:meth:`ConversationScorer.to_json`) holds message ids, tactic names and disclosed
ages, never message text, so a device can persist it cheaply.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from lifeguard.errors import LifeguardError
from lifeguard.safety.convmodel import (
    FEATURES,
    ConversationModel,
    Head,
    SenderStats,
    default_conversation_model,
)
from lifeguard.safety.embed import Encoder, default_encoder, embedding_available
from lifeguard.safety.lexicon import (
    GROOMING_TACTICS,
    SEXTORTION_TACTICS,
    TACTICS,
    Lexicon,
    default_lexicon,
)
from lifeguard.safety.model import TacticModel, default_model
from lifeguard.safety.normalize import fold, phrase_pattern, readable

__all__ = [
    "Assessment",
    "ConversationScorer",
    "InvalidConversation",
    "Message",
    "ScoringConfig",
    "score_conversation",
]

STATE_VERSION = 2
MAX_TEXT_CHARS = 20_000
MAX_EVIDENCE_PER_TACTIC = 20
MINOR_BANDS = frozenset({"minor", "under_13", "0-12", "10-12", "13-15", "16-17", "13-17"})
ADULT_BANDS = frozenset({"adult", "18+", "18-24", "25-34", "35+", "over_18"})
LEVELS = ("none", "low", "medium", "high")

_AGE_PATTERNS = (
    re.compile(r"(?:^| )i (?:am|m) (\d{1,2})(?: |$)"),
    re.compile(r"(?:^| )(\d{1,2}) years? old(?: |$)"),
    re.compile(r"(?:^| )i (?:just )?turned (\d{1,2})(?: |$)"),
    re.compile(r"^(\d{1,2})(?: and you| hbu| you| lol| haha)?$"),
    re.compile(r"(?:^| )(?:bit older|older) (\d{2})(?: |$)"),
)

# Stated school stages and decades, on folded text -> a rough age (only minor/adult matters).
_STAGE_PATTERNS: tuple[tuple[re.Pattern[str], int | None], ...] = (
    (re.compile(r"(?:^| )i am in (?:grade|year) (\d{1,2})(?: |$)"), None),
    (re.compile(r"(?:^| )i am in (\d{1,2}) ?(?:th|st|nd|rd) grade(?: |$)"), None),
    (re.compile(r"(?:^| )i am (?:stil )?in (?:midle|junior high|primary|elementary) scho?l"), 12),
    (re.compile(r"(?:^| )i am (?:stil )?in (?:high|secondary) scho?l"), 15),
    (re.compile(r"(?:^| )i am in my (?:twenties|20 ?s)(?: |$)"), 25),
    (re.compile(r"(?:^| )i am in my (?:thirties|30 ?s)(?: |$)"), 35),
    (re.compile(r"(?:^| )i am in my (?:forties|40 ?s|fifties|50 ?s)(?: |$)"), 45),
    (re.compile(r"(?:^| )i am a grown (?:man|woman|adult)(?: |$)"), 30),
)
_RULE_SX = FEATURES.index("rule_sextortion")
_STRONG_GROOMING = frozenset({"secrecy", "isolation", "photo_request", "sexualisation", "meeting"})
_SECOND_PERSON = re.compile(r"(?<![a-z0-9])(?:you|your|yours|yourself|ya)(?![a-z0-9])")
# Reported speech: a message that says what SOMEONE ELSE asks, says or does ("they ask how old
# you are", "he told me to keep it secret", "scammers often threaten to post…") describes a
# tactic rather than using it on the reader: lessons, warnings, a child telling a friend or a
# trusted adult. Matched on folded text (so "kep" is "keep"): a third-person subject followed
# within two words by a reporting or habitual verb.
_REPORTED = re.compile(
    r"(?<![a-z0-9])(?:they|he|she|someone|somebody|people|groomers?|scamers?|predators?|"
    r"abusers?|criminals?|strangers?|ofenders?|extortionists?|a stranger|this guy|this man|"
    r"this person|the guy|the man|a man|a person|some adults?|bad people|adults)"
    r"(?: [a-z0-9]+){0,2} (?:ask|asks|asked|say|says|said|tel|tels|told|try|tries|tried|often|"
    r"usualy|typicaly|sometimes|pretend|pretends|pretended|claim|claims|claimed|threaten|"
    r"threatens|threatened|demand|demands|demanded|kept asking|keeps asking|wanted me|wants me|"
    r"wanted her|wanted him|made me|might ask|may ask|wil ask|might say|may say|wil say|"
    r"might try|may try|wil try|might pretend|may pretend|start|starts|wil often|get you to|"
    r"gets you to|got me to|got her to|got him to|sent me|sent her|sent him)(?![a-z0-9])"
)
# Family members named in a message (a parent's or relative's chat), and a participant pushing
# back ("stop", "leave me alone", "I don't have money"): inputs of the conversation model.
_FAMILY = phrase_pattern(
    [
        "mum",
        "mom",
        "mam",
        "mummy",
        "mommy",
        "dad",
        "daddy",
        "nana",
        "nan",
        "grandma",
        "granny",
        "grandad",
        "grandpa",
        "auntie",
        "aunty",
        "aunt",
        "uncle",
        "cousin",
        "brother",
        "sister",
        "bro",
        "sis",
        "grandparents",
        "stepdad",
        "stepmum",
        "husband",
        "wife",
    ]
)
_PUSHBACK = phrase_pattern(
    [
        "please dont", "pls dont", "stop", "leave me alone", "weird", "creepy", "i dont have",
        "i dont want", "im scared", "no thanks", "why do you want", "wtf", "ill report",
        "im telling", "block you", "blocking you", "uncomfortable", "please no", "i cant",
        "thats not ok", "i dont know you", "who is this", "how did you get",
    ]
)  # fmt: skip
# A quotation of two or more words ("…", “…”, '…' after a space): a lesson's example line or
# a report of what someone wrote.
_QUOTE = re.compile(
    r"[\"“”„«»]([^\"“”„«»]{3,})[\"“”„«»]|(?:^|\s)'([^']{3,}\s[^']*)'(?:\s|$|[.,!?])"
)


class InvalidConversation(LifeguardError):
    """A message or a saved state is malformed (422 over HTTP)."""

    code = "invalid_conversation"


@dataclass(frozen=True)
class Message:
    id: str
    sender: str
    text: str
    t: float | None = None

    @classmethod
    def from_obj(cls, obj: Message | Mapping[str, Any]) -> Message:
        if isinstance(obj, Message):
            msg = obj
        elif isinstance(obj, Mapping):
            try:
                t = obj.get("t")
                msg = cls(
                    id=str(obj["id"]),
                    sender=str(obj["sender"]),
                    text=obj["text"],
                    t=None if t is None else float(t),
                )
            except KeyError as e:
                raise InvalidConversation(f"message: missing field {e.args[0]!r}") from e
            except (TypeError, ValueError) as e:
                raise InvalidConversation(f"message: bad field: {e}") from e
        else:
            raise InvalidConversation("message: expected an object with id, sender, text")
        if not isinstance(msg.text, str):
            raise InvalidConversation(f"message {msg.id}: text must be a string")
        if len(msg.text) > MAX_TEXT_CHARS:
            raise InvalidConversation(
                f"message {msg.id}: text is over the limit of {MAX_TEXT_CHARS:,} characters"
            )
        if not msg.id or not msg.sender:
            raise InvalidConversation("message: id and sender must be non-empty")
        return msg


@dataclass(frozen=True)
class ScoringConfig:
    """Weights and thresholds of the conversation-level combination."""

    weights: Mapping[str, float] = field(
        default_factory=lambda: {
            "age": 0.35,
            "secrecy": 0.55,
            "isolation": 0.55,
            "photo_request": 0.55,
            "sexualisation": 0.55,
            "gifts": 0.35,
            "meeting": 0.55,
            "payment_demand": 0.3,
            "deadline": 0.2,
            "claims_images": 0.45,
            "threat_share": 1.0,
        }
    )
    age_gap_weight: float = 0.55
    lexicon_boost: float | None = None  # None: the value chosen in training (model info)
    default_threshold: float = 0.5
    flag_threshold: float = 0.7
    peer_damping: float = 0.6  # grooming score x this when every known age is a minor's
    adult_damping: float = 0.6  # grooming score x this when every known age is an adult's
    # A lexicon hit counts only when the model gives the tactic at least this probability
    # (the model vetoes look-alike ordinary talk). v4: 0.2 for every tactic, threats included
    # (v3 had 0.02-0.1 and no veto on threats; chosen by cross-validation over the hand-written sets).
    lexicon_veto: float = 0.2
    lexicon_veto_by_tactic: Mapping[str, float] = field(default_factory=dict)
    # Tactics the model may find on its own (without a lexicon hit): all but threats, whose
    # false alarms flag a conversation at once.
    model_alone: frozenset[str] = frozenset(TACTICS) - {"threat_share"}
    # Lexicon veto for the strong grooming tactics once the sender has shown another of them
    # (None: no relief).
    grooming_context_veto: float | None = 0.2
    # The model alone finds a tactic at its trained threshold, but never below this floor.
    model_alone_floor: float = 0.7
    # In a sextortion context (see ConversationScorer.message_tactics) the model alone may
    # find a threat at this probability.
    context_threat_threshold: float = 0.6
    level_thresholds: tuple[float, float] = (0.2, 0.45)
    # Messages in reported speech or whose tactic words are all quoted show no tactic.
    reported_speech: bool = True
    # v4: the trained conversation model decides the flag (its probability is the score). False:
    # v3's hand-set noisy-or of tactic weights decides (flag at flag_threshold).
    conversation_model: bool = True
    # "auto": use the all-MiniLM-L6-v2 embedding (the model's "full" head) when it is installed;
    # "off": never (the "lite" head, no embedding, ~20x cheaper per message).
    embedding: str = "auto"

    @classmethod
    def v3(cls) -> ScoringConfig:
        """v3 as it shipped: the hand-set rule score decides, v3's lexicon vetoes, no reported
        speech (for comparisons and for platforms that want the rules only)."""
        return cls(
            conversation_model=False,
            lexicon_veto=0.1,
            lexicon_veto_by_tactic={
                "threat_share": 0.0,
                "age": 0.02,
                "secrecy": 0.05,
                "photo_request": 0.05,
                "meeting": 0.05,
            },
            grooming_context_veto=0.0,
            reported_speech=False,
        )


@dataclass(frozen=True)
class Assessment:
    score: float
    level: str
    flagged: bool
    sextortion: bool
    tactics: list[str]
    evidence_message_ids: list[str]
    evidence: dict[str, list[str]]
    age_gap: bool
    messages_seen: int
    flagged_at: str | None
    message_id: str | None = None
    message_tactics: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "level": self.level,
            "flagged": self.flagged,
            "sextortion": self.sextortion,
            "tactics": list(self.tactics),
            "evidence_message_ids": list(self.evidence_message_ids),
            "evidence": {k: list(v) for k, v in self.evidence.items()},
            "age_gap": self.age_gap,
            "messages_seen": self.messages_seen,
            "flagged_at": self.flagged_at,
            "message_id": self.message_id,
            "message_tactics": list(self.message_tactics),
        }


def _band_kind(band: str | None) -> str | None:
    if band is None:
        return None
    b = band.strip().lower()
    if b in MINOR_BANDS:
        return "minor"
    if b in ADULT_BANDS:
        return "adult"
    return None


def disclosed_ages(folded: str) -> list[int]:
    """Ages a message states about its sender ("im 13", "24 years old", a bare "14"), and
    rough ones from a school stage or a decade ("im in year 8", "im in my twenties")."""
    out: list[int] = []
    for rx in _AGE_PATTERNS:
        for m in rx.finditer(folded):
            age = int(m.group(1))
            if 8 <= age <= 80:
                out.append(age)
    for srx, fixed in _STAGE_PATTERNS:
        stage = srx.search(folded)
        if stage is None:
            continue
        if fixed is not None:
            out.append(fixed)
        elif 1 <= int(stage.group(1)) <= 12:
            out.append(int(stage.group(1)) + 5)  # grade/year N: about N + 5 years old
    return out


class ConversationScorer:
    """Scores one conversation message by message. Not thread-safe (one per conversation)."""

    def __init__(
        self,
        participants: Iterable[Mapping[str, Any]] = (),
        *,
        lexicon: Lexicon | None = None,
        model: TacticModel | None = None,
        config: ScoringConfig | None = None,
        conversation_model: ConversationModel | None = None,
        encoder: Encoder | None = None,
    ) -> None:
        self.lexicon = lexicon or default_lexicon()
        self.model = model or default_model()
        self.config = config or ScoringConfig()
        self.conv_model: ConversationModel | None = None
        self.encoder: Encoder | None = None
        if self.config.conversation_model:
            self.conv_model = conversation_model or default_conversation_model()
            if encoder is not None:
                self.encoder = encoder
            elif self.config.embedding == "auto" and embedding_available():
                self.encoder = default_encoder()
        self.head: Head | None = None
        if self.conv_model is not None:
            self.head = self.conv_model.full if self.encoder is not None else self.conv_model.lite
        self.stats: dict[str, SenderStats] = {}
        self._reported_last = False
        self.bands: dict[str, str] = {}
        self.add_participants(participants)
        self.evidence: dict[str, dict[str, list[str]]] = {}  # sender -> tactic -> ids
        self.ages: dict[str, list[int]] = {}
        self.messages_seen = 0
        self.flagged_at: str | None = None
        self.sextortion_at: str | None = None
        self._order: list[str] = []  # ids of messages that showed a tactic, in order
        self._last: Assessment | None = None

    def add_participants(self, participants: Iterable[Mapping[str, Any]]) -> None:
        """Record participants' known age bands (others are ignored)."""
        for p in participants:
            if not isinstance(p, Mapping) or "id" not in p:
                raise InvalidConversation("participants: each needs an 'id'")
            kind = _band_kind(p.get("age_band"))
            if kind is not None:
                self.bands[str(p["id"])] = kind

    # ------------------------------------------------------------------ per message
    def message_tactics(
        self, text: str, context: frozenset[str] = frozenset()
    ) -> tuple[list[str], dict[str, float], str]:
        """The tactics one message shows, the per-tactic strengths, and the folded text.

        ``context`` is the tactics its sender has already shown. In a sextortion context (the
        sender, or this message, shows a claim to hold images, a payment demand, a deadline or
        a threat), lexicon hits on sextortion tactics need no model agreement, the lexicon's
        context patterns count ("or I post it", "you know what happens"), and the model alone
        may find a threat at ``context_threat_threshold``."""
        folded = fold(text)
        self._reported_last = self.config.reported_speech and self._reported(text, folded)
        if self._reported_last:
            return [], {t: 0.0 for t in TACTICS}, folded
        lex = {h.tactic for h in self.lexicon.hits(folded)}
        proba = self.model.proba(folded)
        found: list[str] = []
        strength: dict[str, float] = {}
        cfg = self.config
        boost = cfg.lexicon_boost
        if boost is None:
            boost = float(self.model.info.get("lexicon_boost", 0.35))
        vetoes = cfg.lexicon_veto_by_tactic
        for t in TACTICS:
            veto = vetoes.get(t, cfg.lexicon_veto)
            p = proba.get(t, 0.0)
            s = p + (boost if t in lex else 0.0)
            strength[t] = min(1.0, s)
            thr = max(self.model.thresholds.get(t, cfg.default_threshold), cfg.model_alone_floor)
            if (s >= thr and t in cfg.model_alone) or (t in lex and p >= veto):
                found.append(t)
        sext = frozenset(SEXTORTION_TACTICS)
        here = context | set(found)
        # A threat names its target: without a sextortion context, a lexicon threat counts only
        # when the message addresses the reader ("I'll post the group photo on the family chat"
        # is no threat).
        in_context = bool(((here | lex) - {"threat_share"}) & sext)
        if "threat_share" in found and not in_context and not _SECOND_PERSON.search(folded):
            found.remove("threat_share")
            here = context | set(found)
        if here & sext:
            for t in SEXTORTION_TACTICS:
                if t in found:
                    continue
                by_lexicon = t in lex and bool((here - {t}) & sext)
                by_model = t == "threat_share" and proba.get(t, 0.0) >= cfg.context_threat_threshold
                if by_lexicon or by_model:
                    found.append(t)
            addressed = bool(_SECOND_PERSON.search(folded)) or "claims_images" in here
            for t, req in self.lexicon.context_hits(folded).items():
                # a context threat names the reader unless the sender claimed to hold images
                if t == "threat_share" and not addressed:
                    continue
                if t not in found and (here - {t}) & req:
                    found.append(t)
        # Grooming context: once the sender has shown one of the strong grooming tactics, the
        # lexicon's hits on the others need less model agreement (a second tactic from the
        # same sender is what flags, and unseen phrasings are where the model vetoes wrongly).
        relief = cfg.grooming_context_veto
        if relief is not None and context & _STRONG_GROOMING:
            for t in _STRONG_GROOMING - context - set(found):
                if t in lex and proba.get(t, 0.0) >= relief:
                    found.append(t)
        found.sort(key=TACTICS.index)
        return found, strength, folded

    def _reported(self, text: str, folded: str) -> bool:
        """Whether the message reports someone else's words or habits (see ``_REPORTED``), or
        its lexicon hits all sit inside a quotation."""
        if _REPORTED.search(folded):
            return True
        quoted = [m.group(1) or m.group(2) or "" for m in _QUOTE.finditer(text)]
        if not quoted:
            return False
        inside = {h.tactic for q in quoted for h in self.lexicon.hits(fold(q))}
        if not inside:
            return False
        outside = _QUOTE.sub(" ", text)
        return not ({h.tactic for h in self.lexicon.hits(fold(outside))} & inside)

    def add(self, message: Message | Mapping[str, Any]) -> Assessment:
        """Score one more message; returns the conversation's assessment so far."""
        return self._add(Message.from_obj(message), None)

    def add_each(self, messages: Iterable[Message | Mapping[str, Any]]) -> list[Assessment]:
        """Score several messages in order; the assessment after each. Same result as calling
        :meth:`add` for each, but the sentence embeddings are computed in one batch."""
        msgs = [Message.from_obj(m) for m in messages]
        vecs = (
            self.encoder.encode([readable(m.text) for m in msgs], batch_size=64)
            if self.encoder is not None and self.conv_model is not None and msgs
            else None
        )
        return [self._add(m, None if vecs is None else vecs[i]) for i, m in enumerate(msgs)]

    def _add(self, msg: Message, vec: npt.NDArray[np.float32] | None) -> Assessment:
        context = frozenset(self.evidence.get(msg.sender, {}))
        found, strength, folded = self.message_tactics(msg.text, context)
        self.messages_seen += 1
        st = self.stats.setdefault(msg.sender, SenderStats())
        st.n += 1
        st.maxs = [max(a, strength.get(t, 0.0)) for a, t in zip(st.maxs, TACTICS, strict=True)]
        st.tactic_messages += bool(found)
        st.reported += self._reported_last
        st.family += bool(_FAMILY.search(folded))
        st.pushback += bool(_PUSHBACK.search(folded))
        st.second_person += bool(_SECOND_PERSON.search(folded))
        if self.encoder is not None and self.conv_model is not None:
            emb = self.conv_model.full.embedding
            assert emb is not None
            if vec is None:
                vec = self.encoder.encode([readable(msg.text)])[0]
            st.emb_proj += float(vec.astype(np.float64) @ emb)
            st.emb_n += 1
        if found and len(self._order) < 4 * MAX_EVIDENCE_PER_TACTIC * len(TACTICS):
            self._order.append(msg.id)
        mine = self.evidence.setdefault(msg.sender, {})
        for t in found:
            ids = mine.setdefault(t, [])
            if len(ids) < MAX_EVIDENCE_PER_TACTIC:
                ids.append(msg.id)
        if "age" in found:
            ages = disclosed_ages(folded)
            if ages:
                self.ages.setdefault(msg.sender, []).extend(ages[:3])
                self.ages[msg.sender] = self.ages[msg.sender][-5:]
        a = self._assess(msg.id, found)
        if a.flagged and self.flagged_at is None:
            self.flagged_at = msg.id
        if a.sextortion and self.sextortion_at is None:
            self.sextortion_at = msg.id
        # the conversation model ran once; only flagged_at may have just been set
        self._last = a = replace(a, flagged_at=self.flagged_at)
        return a

    def add_many(self, messages: Iterable[Message | Mapping[str, Any]]) -> Assessment:
        """Score several messages; the assessment after the last."""
        done = self.add_each(messages)
        return done[-1] if done else self.assessment()

    # ------------------------------------------------------------------ conversation level
    def age_gap(self) -> bool:
        kinds: dict[str, set[str]] = {}
        for sender, ages in self.ages.items():
            for age in ages:
                kinds.setdefault(sender, set()).add("minor" if age < 18 else "adult")
        for sender, kind in self.bands.items():
            kinds.setdefault(sender, set()).add(kind)
        minors = {s for s, k in kinds.items() if "minor" in k}
        adults = {s for s, k in kinds.items() if "adult" in k}
        return any(a != m for a in adults for m in minors)

    def assessment(self) -> Assessment:
        return self._last or self._assess(None, [])

    def peers_only(self) -> bool:
        """Every participant with a known age is a minor, and at least two are known."""
        kinds: dict[str, set[str]] = {}
        for sender, ages in self.ages.items():
            for age in ages:
                kinds.setdefault(sender, set()).add("minor" if age < 18 else "adult")
        for sender, kind in self.bands.items():
            kinds.setdefault(sender, set()).add(kind)
        return len(kinds) >= 2 and all(k == {"minor"} for k in kinds.values())

    def adults_only(self) -> bool:
        """At least two participants are known adults (bands or stated ages) and none is
        known to be a minor."""
        kinds: dict[str, set[str]] = {}
        for sender, ages in self.ages.items():
            for age in ages:
                kinds.setdefault(sender, set()).add("minor" if age < 18 else "adult")
        for sender, kind in self.bands.items():
            kinds.setdefault(sender, set()).add(kind)
        return len(kinds) >= 2 and all(k == {"adult"} for k in kinds.values())

    def sender_features(
        self,
        sender: str,
        *,
        gap: bool,
        peers: bool,
        adults: bool,
        totals: tuple[bool, int] | None = None,
    ) -> npt.NDArray[np.float64]:
        """The conversation model's inputs for one sender (:data:`convmodel.FEATURES` order).
        ``totals`` (anyone showed age, everyone's pushback) may be passed in when scoring every
        sender, so a group chat costs linear, not quadratic, time."""
        st = self.stats.get(sender) or SenderStats()
        ev = self.evidence.get(sender, {})
        age_any, all_pushback = totals if totals is not None else self._totals()
        has = [1.0 if (t in ev or (t == "age" and age_any)) else 0.0 for t in TACTICS]
        n = max(st.n, 1)
        strong = sum(h for h, t in zip(has, TACTICS, strict=True) if t in _STRONG_GROOMING)
        pushback = all_pushback - st.pushback
        rule, rule_sx = self._sender_score({t for h, t in zip(has, TACTICS, strict=True) if h}, gap)
        out = [
            *has,
            *st.maxs,
            st.family / n,
            min(pushback, 3) / 3,
            st.second_person / n,
            sum(has) / 4,
            strong / 3,
            float(gap),
            float(peers),
            float(adults),
            math.log1p(st.n) / 3,
            st.tactic_messages / n,
            st.reported / n,
            rule,
            float(rule_sx),
        ]
        assert len(out) == len(FEATURES)
        return np.array(out, dtype=np.float64)

    def _totals(self) -> tuple[bool, int]:
        return (
            any("age" in e for e in self.evidence.values()),
            sum(o.pushback for o in self.stats.values()),
        )

    def _sender_score(self, has: set[str], gap: bool) -> tuple[float, bool]:
        cfg = self.config
        keep = 1.0
        for t in has:
            w = cfg.weights.get(t, 0.0)
            if t == "age" and gap:
                w = max(w, cfg.age_gap_weight)
            keep *= 1.0 - w
        score = 1.0 - keep
        sextortion = False
        if "threat_share" in has:
            sextortion = True
            score = 1.0
        elif "claims_images" in has and has & {"payment_demand", "deadline"}:
            sextortion = True
            score = max(score, 0.9)
        if gap and {"secrecy", "photo_request"} <= has:
            score = max(score, 0.9)
        return score, sextortion

    def _assess(self, message_id: str | None, message_tactics: list[str]) -> Assessment:
        cfg = self.config
        gap = self.age_gap()
        damp = (
            cfg.peer_damping
            if self.peers_only()
            else cfg.adult_damping
            if self.adults_only()
            else 1.0
        )
        # Age questions and disclosures count for every sender (the child's "im 13" answers
        # the contact's question); the other tactics count for the sender who used them.
        age_ids = [i for ev in self.evidence.values() for i in ev.get("age", [])]
        score, sextortion, by_model = 0.0, False, False
        if self.head is not None:
            head = self.head
            peers, adults, totals = self.peers_only(), self.adults_only(), self._totals()
            for sender in self.stats:
                f = self.sender_features(sender, gap=gap, peers=peers, adults=adults, totals=totals)
                st = self.stats[sender]
                emb = st.emb_proj / st.emb_n if (head.embedding is not None and st.emb_n) else 0.0
                p = head.proba(f, emb)
                sx = bool(f[_RULE_SX] > 0)
                score = max(score, p)
                if p >= head.threshold or (sx and p >= head.sextortion_threshold):
                    by_model = True
                    sextortion = sextortion or sx
        else:
            for ev in self.evidence.values():
                has = set(ev) | ({"age"} if age_ids else set())
                sc, sx = self._sender_score(has, gap)
                if not sx:
                    sc *= damp
                score, sextortion = max(score, sc), sextortion or sx
        found = [t for t in TACTICS if any(t in ev for ev in self.evidence.values())]
        evidence: dict[str, list[str]] = {}
        for t in found:
            evidence[t] = [i for ev in self.evidence.values() for i in ev.get(t, [])]
        lo, mid = cfg.level_thresholds
        flagged = by_model if self.head is not None else score >= cfg.flag_threshold
        level = (
            "high" if flagged else "medium" if score >= mid else "low" if score >= lo else "none"
        )
        seen: set[str] = set()
        evidence_ids: list[str] = []
        for ids in evidence.values():
            for i in ids:
                if i not in seen:
                    seen.add(i)
                    evidence_ids.append(i)
        order = {i: n for n, i in enumerate(self._order)}
        evidence_ids.sort(key=lambda i: order.get(i, len(order)))
        return Assessment(
            score=round(score, 6),
            level=level,
            flagged=flagged,
            sextortion=sextortion,
            tactics=found,
            evidence_message_ids=evidence_ids,
            evidence=evidence,
            age_gap=gap,
            messages_seen=self.messages_seen,
            flagged_at=self.flagged_at,
            message_id=message_id,
            message_tactics=list(message_tactics),
        )

    # ------------------------------------------------------------------ state
    def to_json(self) -> dict[str, Any]:
        """The scorer's state (no message text) as a JSON-able object."""
        return {
            "version": STATE_VERSION,
            "bands": dict(self.bands),
            "evidence": {s: {t: list(v) for t, v in ev.items()} for s, ev in self.evidence.items()},
            "order": list(self._order),
            "ages": {k: list(v) for k, v in self.ages.items()},
            "messages_seen": self.messages_seen,
            "flagged_at": self.flagged_at,
            "sextortion_at": self.sextortion_at,
            "stats": {k: v.to_json() for k, v in self.stats.items()},
            "model": self.model.info.get("digest"),
            "conversation_model": (
                self.conv_model.info.get("digest") if self.conv_model is not None else None
            ),
            "head": (
                None if self.head is None else "full" if self.head.embedding is not None else "lite"
            ),
        }

    @classmethod
    def from_json(
        cls,
        state: Mapping[str, Any],
        *,
        lexicon: Lexicon | None = None,
        model: TacticModel | None = None,
        config: ScoringConfig | None = None,
        conversation_model: ConversationModel | None = None,
        encoder: Encoder | None = None,
    ) -> ConversationScorer:
        """A scorer that continues from a state written by :meth:`to_json`."""
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            raise InvalidConversation(f"state: expected an object with version {STATE_VERSION}")
        s = cls(
            lexicon=lexicon,
            model=model,
            config=config,
            conversation_model=conversation_model,
            encoder=encoder,
        )
        try:
            s.bands = {str(k): str(v) for k, v in dict(state.get("bands", {})).items()}
            if not set(s.bands.values()) <= {"minor", "adult"}:
                raise ValueError("bands must be 'minor' or 'adult'")
            evidence = dict(state.get("evidence", {}))
            s.evidence = {}
            for sender, ev in evidence.items():
                unknown = set(dict(ev)) - set(TACTICS)
                if unknown:
                    raise ValueError(f"unknown tactics {sorted(unknown)}")
                s.evidence[str(sender)] = {str(t): [str(i) for i in v] for t, v in ev.items()}
            s._order = [str(i) for i in state.get("order", [])]
            s.ages = {str(k): [int(a) for a in v] for k, v in dict(state.get("ages", {})).items()}
            s.messages_seen = int(state.get("messages_seen", 0))
            s.stats = {
                str(k): SenderStats.from_json(v) for k, v in dict(state.get("stats", {})).items()
            }
            fa, sa = state.get("flagged_at"), state.get("sextortion_at")
            s.flagged_at = None if fa is None else str(fa)
            s.sextortion_at = None if sa is None else str(sa)
        except (TypeError, ValueError) as e:
            raise InvalidConversation(f"state: {e}") from e
        return s


def score_conversation(
    messages: Iterable[Message | Mapping[str, Any]],
    participants: Iterable[Mapping[str, Any]] = (),
) -> Assessment:
    """Batch scoring: the assessment after all ``messages`` (same as adding them one by one)."""
    return ConversationScorer(participants).add_many(messages)


__all__ += ["GROOMING_TACTICS", "disclosed_ages"]
