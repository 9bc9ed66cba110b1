"""Contact rules on metadata: declarative rules, an in-memory engine fed by events, and the decision
"may A contact B?".

* Rules come from a TOML file (format in docs/contact-rules.md), validated at load:
  :func:`load_rules` raises :class:`RulesError` naming the line and field of every problem.
  Three kinds: ``deny_contact`` (age bands of sender and recipient, connection status),
  ``rate`` (distinct recipients over a sliding window) and ``risk`` (blocks and reports add risk
  to the other party; thresholds). Actions: allow / flag / require_review / restrict / deny.
* :class:`Engine` holds accounts' age bands, connections, blocks, sliding-window counters and
  risk in memory. :meth:`Engine.apply` feeds it an event and returns the :class:`Finding`\\ s the
  event triggered; :meth:`Engine.may_contact` answers with a :class:`Decision`.
* :meth:`Engine.snapshot` / :meth:`Engine.restore` give a JSON form so a restarted service resumes.
  :class:`SafetyEngineService` adds a lock and periodic snapshots to a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import tomllib
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lifeguard.errors import LifeguardError
from lifeguard.safety.events import (
    AGE_BANDS,
    BAND_GROUPS,
    CONTACT_TYPES,
    Event,
    parse_event,
)

log = logging.getLogger(__name__)
DEFAULT_RULES_FILE: Final = Path(__file__).with_name("rules_default.toml")
ACTIONS: Final = ("allow", "flag", "require_review", "restrict", "deny")
#: Severity of an action: the decision takes the most severe action of the rules that apply.
SEVERITY: Final = {a: i for i, a in enumerate(ACTIONS)}
#: Actions under which the contact may go ahead (a flag is recorded; the contact is not stopped).
ALLOWING: Final = frozenset({"allow", "flag"})
SNAPSHOT_VERSION: Final = 1

Action = Literal["allow", "flag", "require_review", "restrict", "deny"]
ContactKind = Literal["message", "contact_request"]


class RulesError(LifeguardError):
    """A rules file is unusable. ``problems`` lists ``(line, field, message)`` (line 0: unknown)."""

    code = "invalid_rules"

    def __init__(self, source: str, problems: Sequence[tuple[int, str, str]]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = [
            f"{source}:{ln}: {fld}: {msg}" if ln else f"{source}: {fld}: {msg}"
            for ln, fld, msg in self.problems
        ]
        super().__init__("invalid rules file\n" + "\n".join(lines))


# ------------------------------------------------------------------------------ the file format
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    """Seconds from ``"90s"``, ``"15m"``, ``"24h"``, ``"30d"``, ``"2w"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        secs = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration (like 90s, 15m, 24h, 30d, 2w)")
        secs = float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration")
    if not secs > 0 or secs > 366 * 86400 * 10:
        raise ValueError(f"{value!r}: a duration must be > 0 and at most 10 years")
    return secs


def _bands(value: Any) -> frozenset[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise ValueError("expected an age band or a non-empty list of them")
    out: set[str] = set()
    for n in names:
        if n not in BAND_GROUPS:
            raise ValueError(f"{n!r} is not an age band or group ({', '.join(BAND_GROUPS)})")
        out |= BAND_GROUPS[n]
    return frozenset(out)


Bands = Annotated[frozenset[str], Field()]
Duration = Annotated[float, Field()]
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class _RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_ID)
    description: str = ""
    enabled: bool = True


class _RecipientScope(_RuleBase):
    """Which contacts a rule governs: sender and recipient age bands, connection status."""

    sender: Bands = frozenset(AGE_BANDS)
    recipient: Bands = frozenset(AGE_BANDS)
    #: ``False``: only when the two are not connected; ``True``: only when they are; absent: both.
    connected: bool | None = None

    @field_validator("sender", "recipient", mode="before")
    @classmethod
    def _check_bands(cls, v: Any) -> frozenset[str]:
        return _bands(v)


class DenyContactRule(_RecipientScope):
    kind: Literal["deny_contact"]
    #: Which kinds of contact the rule decides.
    events: tuple[ContactKind, ...] = ("message", "contact_request")
    action: Action = "deny"

    @field_validator("events", mode="before")
    @classmethod
    def _nonempty(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("list at least one of message, contact_request")
        return v


class RateRule(_RecipientScope):
    """More than ``max_recipients`` distinct recipients (matching ``recipient``/``connected`` at the
    time of contact) within ``window`` -> ``action`` on the sender for ``hold`` (renewed while the
    count stays over), applied to the sender's further contacts that match the rule."""

    kind: Literal["rate"]
    events: tuple[ContactKind, ...] = ("message", "contact_request")
    window: Duration
    max_recipients: int = Field(ge=0, le=1_000_000)
    action: Action = "flag"
    hold: Duration | None = None

    @field_validator("window", "hold", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @field_validator("events", mode="before")
    @classmethod
    def _nonempty(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("list at least one of message, contact_request")
        return v


class Threshold(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    at: float = Field(gt=0)
    action: Action


class RiskRule(_RecipientScope):
    """A ``block`` or ``report`` by an account in ``reporter`` of an account in ``subject`` adds
    ``points[type]`` to the subject's risk (each reporter counts once per event type within
    ``window``). The highest threshold reached sets the action on the subject's contacts that match
    ``recipient``/``connected`` (``sender`` is implied: the subject)."""

    kind: Literal["risk"]
    reporter: Bands = BAND_GROUPS["child"]
    subject: Bands = frozenset(AGE_BANDS)
    points: dict[Literal["block", "report"], float]
    window: Duration
    thresholds: tuple[Threshold, ...]

    @field_validator("reporter", "subject", mode="before")
    @classmethod
    def _check_bands2(cls, v: Any) -> frozenset[str]:
        return _bands(v)

    @field_validator("window", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> Any:
        return parse_duration(v)

    @field_validator("points")
    @classmethod
    def _points(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("give points for block and/or report")
        for k, p in v.items():
            if not p > 0:
                raise ValueError(f"{k}: points must be > 0")
        return v

    @field_validator("thresholds")
    @classmethod
    def _ordered(cls, v: tuple[Threshold, ...]) -> tuple[Threshold, ...]:
        if not v:
            raise ValueError("give at least one threshold")
        ats = [t.at for t in v]
        if ats != sorted(ats) or len(set(ats)) != len(ats):
            raise ValueError("thresholds must be in strictly increasing order of 'at'")
        return v

    @model_validator(mode="before")
    @classmethod
    def _no_sender(cls, data: Any) -> Any:
        if isinstance(data, dict) and "sender" in data:
            raise ValueError("a risk rule has no 'sender' (the subject is the sender)")
        return data


Rule = Annotated[DenyContactRule | RateRule | RiskRule, Field(discriminator="kind")]


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1]
    rule: tuple[Rule, ...] = ()

    @model_validator(mode="after")
    def _unique_ids(self) -> RulesFile:
        seen: set[str] = set()
        for r in self.rule:
            if r.id in seen:
                raise ValueError(f"duplicate rule id {r.id!r}")
            seen.add(r.id)
        return self


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[DenyContactRule | RateRule | RiskRule, ...]
    source: str
    #: SHA-256 of the file's bytes (recorded in snapshots and decisions' provenance).
    digest: str

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rules]


_KINDS: Final = ("deny_contact", "rate", "risk")


def _rule_lines(text: str) -> list[int]:
    """Line numbers (1-based) of each ``[[rule]]`` header, in order."""
    return [
        i + 1
        for i, line in enumerate(text.splitlines())
        if re.match(r"^\s*\[\[\s*rule\s*\]\]", line)
    ]


def _locate(text: str, loc: Sequence[int | str]) -> tuple[int, str]:
    """Best line and a dotted field name for a pydantic error location."""
    fld = ".".join(str(p) for p in loc)
    if not loc or loc[0] != "rule" or len(loc) < 2 or not isinstance(loc[1], int):
        key = str(loc[0]) if loc else ""
        for i, line in enumerate(text.splitlines()):
            if key and re.match(rf"^\s*{re.escape(key)}\s*=", line):
                return i + 1, fld
        return 0, fld
    headers = _rule_lines(text)
    idx = loc[1]
    if idx >= len(headers):
        return 0, fld
    start = headers[idx]
    end = headers[idx + 1] if idx + 1 < len(headers) else len(text.splitlines()) + 1
    rest = [p for p in loc[2:] if isinstance(p, str)]
    lines = text.splitlines()
    if rest:
        for n in range(start, end):
            if re.match(rf"^\s*{re.escape(rest[0])}\s*=", lines[n - 1]):
                return n, fld
    return start, fld


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    """Parse and validate a rules document (TOML)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise RulesError(source, [(int(m.group(1)) if m else 0, "(syntax)", str(e))]) from None
    try:
        parsed = RulesFile.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
            if len(loc) > 2 and loc[0] == "rule" and loc[2] in _KINDS:
                del loc[2]  # the discriminator's tag
            line, fld = _locate(text, loc)
            msg = err["msg"].removeprefix("Value error, ")
            problems.append((line, fld or "(file)", msg))
        raise RulesError(source, problems) from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    return RuleSet(tuple(r for r in parsed.rule if r.enabled), source, digest)


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Rules from ``path`` (the shipped defaults when None)."""
    p = Path(path) if path is not None else DEFAULT_RULES_FILE
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise RulesError(str(p), [(0, "(file)", f"cannot read: {e.strerror or e}")]) from None
    except UnicodeDecodeError as e:
        raise RulesError(str(p), [(0, "(file)", f"not UTF-8: {e}")]) from None
    return parse_rules(text, str(p))


# ------------------------------------------------------------------------------------ decisions
@dataclass(frozen=True, slots=True)
class Reason:
    rule: str
    action: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "action": self.action, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    action: str
    reasons: tuple[Reason, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "action": self.action,
            "reasons": [r.to_json() for r in self.reasons],
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """Something an event triggered: ``account`` now has ``action`` under ``rule``."""

    rule: str
    account: str
    action: str
    ts: float
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "account": self.account,
            "action": self.action,
            "ts": self.ts,
            "detail": self.detail,
        }


ALLOW: Final = Decision(True, "allow", ())


# ---------------------------------------------------------------------------------- the engine
@dataclass(slots=True)
class _RateState:
    recent: OrderedDict[str, float] = field(default_factory=OrderedDict)
    until: float = 0.0


@dataclass(slots=True)
class _RiskState:
    #: (reporter, event type) -> (ts, points), oldest first.
    recent: OrderedDict[tuple[str, str], tuple[float, float]] = field(default_factory=OrderedDict)
    score: float = 0.0
    level: int = -1  # index into thresholds; -1: none reached


class Engine:
    """Rules + state. Not thread-safe (wrap it in :class:`SafetyEngineService` for a service).

    Accounts never seen in an ``account`` event have the band ``unknown``. Events are expected in
    roughly increasing time; a late event counts at its own time and expires with the window."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.bands: dict[str, str] = {}
        self.connections: dict[str, set[str]] = {}
        #: blocker -> accounts it blocked.
        self.blocks: dict[str, set[str]] = {}
        self._deny = {
            k: [r for r in rules.rules if isinstance(r, DenyContactRule) and k in r.events]
            for k in CONTACT_TYPES
        }
        self._rate = [r for r in rules.rules if isinstance(r, RateRule)]
        self._rate_by_kind = {
            k: [(i, r) for i, r in enumerate(self._rate) if k in r.events] for k in CONTACT_TYPES
        }
        self._risk = [r for r in rules.rules if isinstance(r, RiskRule)]
        self.rate_state: list[dict[str, _RateState]] = [{} for _ in self._rate]
        self.risk_state: list[dict[str, _RiskState]] = [{} for _ in self._risk]
        self.events_applied = 0
        #: The latest event time seen (the engine's clock for compaction).
        self.latest_ts = 0.0

    # -------------------------------------------------------------------------- state helpers
    def band(self, account: str) -> str:
        return self.bands.get(account, "unknown")

    def connected(self, a: str, b: str) -> bool:
        c = self.connections.get(a)
        return c is not None and b in c

    def _connect(self, a: str, b: str) -> None:
        self.connections.setdefault(a, set()).add(b)
        self.connections.setdefault(b, set()).add(a)

    def _disconnect(self, a: str, b: str) -> None:
        for x, y in ((a, b), (b, a)):
            c = self.connections.get(x)
            if c is not None:
                c.discard(y)
                if not c:
                    del self.connections[x]

    # -------------------------------------------------------------------------------- events
    def apply(self, ev: Event) -> list[Finding]:
        """Update the state with one event; return what it triggered (usually nothing)."""
        self.events_applied += 1
        if ev.ts > self.latest_ts:
            self.latest_ts = ev.ts
        t = ev.type
        if t == "message" or t == "contact_request":
            return self._contact(ev) if self._rate_by_kind[t] else []
        if t == "account":
            self.bands[ev.actor] = ev.age_band
            return []
        if t == "connect":
            self._connect(ev.actor, ev.target)
            return []
        if t == "disconnect":
            self._disconnect(ev.actor, ev.target)
            return []
        if t == "block":
            self.blocks.setdefault(ev.actor, set()).add(ev.target)
            self._disconnect(ev.actor, ev.target)
            return self._risk_event(ev)
        if t == "unblock":
            s = self.blocks.get(ev.actor)
            if s is not None:
                s.discard(ev.target)
                if not s:
                    del self.blocks[ev.actor]
            return []
        if t == "report":
            return self._risk_event(ev)
        raise ValueError(f"unknown event type {t!r}")  # parse_event refuses these

    def apply_all(self, events: Iterable[Event]) -> list[Finding]:
        out: list[Finding] = []
        for ev in events:
            f = self.apply(ev)
            if f:
                out.extend(f)
        return out

    def _contact(self, ev: Event) -> list[Finding]:
        sender, recipient, ts = ev.actor, ev.target, ev.ts
        sb = self.bands.get(sender, "unknown")
        rb = self.bands.get(recipient, "unknown")
        found: list[Finding] = []
        conn: bool | None = None
        for i, r in self._rate_by_kind[ev.type]:
            if sb not in r.sender or rb not in r.recipient:
                continue
            if r.connected is not None:
                if conn is None:
                    conn = self.connected(sender, recipient)
                if conn != r.connected:
                    continue
            states = self.rate_state[i]
            st = states.get(sender)
            if st is None:
                st = states[sender] = _RateState()
            recent = st.recent
            cutoff = ts - r.window
            while recent:
                first = next(iter(recent.values()))
                if first > cutoff:
                    break
                recent.popitem(last=False)
            last = recent.pop(recipient, None)
            # Latest contact last; a late event does not move a recipient back in time.
            recent[recipient] = ts if last is None or ts > last else last
            n = len(recent)
            if n > r.max_recipients:
                was_active = st.until > ts
                st.until = max(st.until, ts + (r.hold if r.hold is not None else r.window))
                if not was_active:
                    found.append(
                        Finding(
                            r.id,
                            sender,
                            r.action,
                            ts,
                            f"{n} distinct recipients within {_fmt_s(r.window)} "
                            f"(limit {r.max_recipients})",
                        )
                    )
        return found

    def _risk_event(self, ev: Event) -> list[Finding]:
        if not self._risk:
            return []
        reporter, subject, ts = ev.actor, ev.target, ev.ts
        rb = self.bands.get(reporter, "unknown")
        sb = self.bands.get(subject, "unknown")
        found: list[Finding] = []
        for i, r in enumerate(self._risk):
            pts = r.points.get(ev.type)  # type: ignore[call-overload]
            if pts is None or rb not in r.reporter or sb not in r.subject:
                continue
            states = self.risk_state[i]
            st = states.get(subject)
            if st is None:
                st = states[subject] = _RiskState()
            _prune_risk(st, ts - r.window)
            key = (reporter, ev.type)
            old = st.recent.pop(key, None)
            if old is not None:
                st.score -= old[1]
            st.recent[key] = (ts if old is None or ts > old[0] else old[0], pts)
            st.score += pts
            level = _level(r, st.score)
            if level > st.level:
                th = r.thresholds[level]
                found.append(
                    Finding(
                        r.id,
                        subject,
                        th.action,
                        ts,
                        f"risk {st.score:g} >= {th.at:g} within {_fmt_s(r.window)}",
                    )
                )
            st.level = level
        return found

    # ------------------------------------------------------------------------------ decisions
    def may_contact(
        self, sender: str, recipient: str, now: float | None = None, kind: str = "message"
    ) -> Decision:
        """May ``sender`` contact (``kind``: message or contact_request) ``recipient`` at ``now``?"""
        if kind not in CONTACT_TYPES:
            raise ValueError(f"kind: {kind!r} is not one of {', '.join(CONTACT_TYPES)}")
        if now is None:
            now = time.time()
        reasons: list[Reason] = []
        b = self.blocks.get(recipient)
        if b is not None and sender in b:
            reasons.append(Reason("blocked", "deny", "the recipient blocked the sender"))
        b = self.blocks.get(sender)
        if b is not None and recipient in b:
            reasons.append(Reason("blocked", "deny", "the sender blocked the recipient"))
        sb = self.bands.get(sender, "unknown")
        rb = self.bands.get(recipient, "unknown")
        c = self.connections.get(sender)
        conn = c is not None and recipient in c
        for r in self._deny[kind]:
            if (
                sb in r.sender
                and rb in r.recipient
                and (r.connected is None or r.connected == conn)
            ):
                reasons.append(
                    Reason(
                        r.id,
                        r.action,
                        r.description or f"{sb} -> {rb}, {'' if conn else 'not '}connected",
                    )
                )
        for i, rr in self._rate_by_kind[kind]:
            st = self.rate_state[i].get(sender)
            if (
                st is not None
                and st.until > now
                and sb in rr.sender
                and rb in rr.recipient
                and (rr.connected is None or rr.connected == conn)
            ):
                reasons.append(
                    Reason(
                        rr.id,
                        rr.action,
                        f"sender contacted more than {rr.max_recipients} such recipients "
                        f"within {_fmt_s(rr.window)}",
                    )
                )
        for i, k in enumerate(self._risk):
            ks = self.risk_state[i].get(sender)
            if (
                ks is None
                or rb not in k.recipient
                or not (k.connected is None or k.connected == conn)
            ):
                continue
            score = _score_at(ks, now - k.window)
            level = _level(k, score)
            if level >= 0:
                th = k.thresholds[level]
                reasons.append(Reason(k.id, th.action, f"sender's risk {score:g} >= {th.at:g}"))
        if not reasons:
            return ALLOW
        action = max((r.action for r in reasons), key=SEVERITY.__getitem__)
        return Decision(action in ALLOWING, action, tuple(reasons))

    def risk(self, account: str, now: float | None = None) -> dict[str, float]:
        """The account's risk score at ``now`` per risk rule (rules where it has none are
        omitted). Reads only: a query about another time changes nothing."""
        now = time.time() if now is None else now
        out: dict[str, float] = {}
        for i, k in enumerate(self._risk):
            st = self.risk_state[i].get(account)
            if st is not None:
                score = _score_at(st, now - k.window)
                if score > 0:
                    out[k.id] = score
        return out

    # ------------------------------------------------------------------------------ snapshots
    def snapshot(self) -> dict[str, Any]:
        """The state as JSON-ready data (a deep copy: safe to serialise while events go on)."""
        conns = [(a, b) for a, bs in self.connections.items() for b in bs if a < b]
        return {
            "version": SNAPSHOT_VERSION,
            "rules_digest": self.rules.digest,
            "events_applied": self.events_applied,
            "latest_ts": self.latest_ts,
            "bands": dict(self.bands),
            "connections": conns,
            "blocks": {a: list(bs) for a, bs in self.blocks.items()},
            "rate": {
                r.id: {
                    s: {"until": st.until, "recent": list(st.recent.items())}
                    for s, st in self.rate_state[i].items()
                    if st.recent or st.until
                }
                for i, r in enumerate(self._rate)
            },
            "risk": {
                r.id: {
                    s: {
                        "level": st.level,
                        "recent": [[a, t, ts, p] for (a, t), (ts, p) in st.recent.items()],
                    }
                    for s, st in self.risk_state[i].items()
                    if st.recent
                }
                for i, r in enumerate(self._risk)
            },
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace the state with a :meth:`snapshot`. Counters of rules that no longer exist are
        dropped; rules new since the snapshot start empty."""
        if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError(f"not a version {SNAPSHOT_VERSION} safety snapshot")
        try:
            self.bands = {str(k): str(v) for k, v in data["bands"].items()}
            for band in set(self.bands.values()):
                if band not in AGE_BANDS:
                    raise SnapshotError(f"unknown age band {band!r}")
            self.connections = {}
            for a, b in data["connections"]:
                self._connect(str(a), str(b))
            self.blocks = {str(a): {str(x) for x in bs} for a, bs in data["blocks"].items()}
            rate = data.get("rate", {})
            for i, r in enumerate(self._rate):
                self.rate_state[i] = {
                    str(s): _RateState(
                        OrderedDict((str(k), float(v)) for k, v in d["recent"]), float(d["until"])
                    )
                    for s, d in rate.get(r.id, {}).items()
                }
            risk = data.get("risk", {})
            for i, k in enumerate(self._risk):
                states: dict[str, _RiskState] = {}
                for s, d in risk.get(k.id, {}).items():
                    recent = OrderedDict(
                        ((str(a), str(t)), (float(ts), float(p))) for a, t, ts, p in d["recent"]
                    )
                    st = _RiskState(recent, sum(p for _, p in recent.values()), int(d["level"]))
                    st.level = min(st.level, _level(k, st.score))
                    states[str(s)] = st
                self.risk_state[i] = states
            self.events_applied = int(data.get("events_applied", 0))
            self.latest_ts = float(data.get("latest_ts", 0.0))
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SnapshotError(f"malformed safety snapshot: {type(e).__name__}: {e}") from None

    def compact(self, now: float) -> int:
        """Drop counters that can no longer affect a decision (window empty, hold over). Returns
        how many were dropped."""
        dropped = 0
        for i, r in enumerate(self._rate):
            states = self.rate_state[i]
            cutoff = now - r.window
            stale = [
                s
                for s, st in states.items()
                if st.until <= now
                and (not st.recent or next(reversed(st.recent.values())) <= cutoff)
            ]
            for s in stale:
                del states[s]
            dropped += len(stale)
        for i, k in enumerate(self._risk):
            rstates = self.risk_state[i]
            cutoff = now - k.window
            rstale = [
                s
                for s, st in rstates.items()
                if not st.recent or max(ts for ts, _ in st.recent.values()) <= cutoff
            ]
            for s in rstale:
                del rstates[s]
            dropped += len(rstale)
        return dropped

    def stats(self) -> dict[str, int]:
        return {
            "accounts": len(self.bands),
            "connections": sum(len(c) for c in self.connections.values()) // 2,
            "blocks": sum(len(b) for b in self.blocks.values()),
            "events_applied": self.events_applied,
            "rate_active": sum(len(s) for s in self.rate_state),
            "risk_active": sum(len(s) for s in self.risk_state),
        }


class SnapshotError(LifeguardError):
    code = "invalid_snapshot"


def _prune_risk(st: _RiskState, cutoff: float) -> None:
    recent = st.recent
    while recent:
        key = next(iter(recent))
        ts, p = recent[key]
        if ts > cutoff:
            break
        del recent[key]
        st.score -= p
    if not recent:
        st.score = 0.0


def _score_at(st: _RiskState, cutoff: float) -> float:
    """The score counting only points newer than ``cutoff`` (without changing ``st``)."""
    recent = st.recent
    if not recent or next(iter(recent.values()))[0] > cutoff:
        return st.score
    return sum(p for ts, p in recent.values() if ts > cutoff)


def _level(r: RiskRule, score: float) -> int:
    level = -1
    for j, th in enumerate(r.thresholds):
        if score >= th.at - 1e-9:
            level = j
    return level


def _fmt_s(secs: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= n and secs % n == 0:
            return f"{int(secs // n)}{unit}"
    return f"{secs:g}s"


# --------------------------------------------------------------------------------- the service
class SafetyEngineService:
    """An :class:`Engine` behind a lock, restored from and saved to a JSON snapshot file (written
    to a temporary file and renamed, so a crash leaves the previous snapshot). A background thread
    saves at most every ``snapshot_interval_s`` seconds when events arrived; :meth:`close` saves
    a last time (the API calls it at shutdown)."""

    def __init__(
        self,
        rules: RuleSet,
        snapshot_path: Path | None = None,
        snapshot_interval_s: float = 30.0,
    ) -> None:
        self.engine = Engine(rules)
        self.lock = threading.Lock()
        self._save_lock = threading.Lock()
        self.snapshot_path = snapshot_path
        self.snapshot_interval_s = snapshot_interval_s
        self._dirty = False
        self._stop = threading.Event()
        self.saves = 0
        if snapshot_path is not None and snapshot_path.exists():
            try:
                data = json.loads(snapshot_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise SnapshotError(f"{snapshot_path}: cannot read the snapshot: {e}") from None
            self.engine.restore(data)
        if snapshot_path is not None:
            _start_saver(self)

    def ingest(self, raw: Sequence[Any]) -> list[Finding]:
        """Validate the whole batch first (nothing is applied if one event is bad), then apply."""
        events = [parse_event(d, i) for i, d in enumerate(raw)]
        with self.lock:
            found = self.engine.apply_all(events)
            self._dirty = True
        return found

    def may_contact(
        self, sender: str, recipient: str, now: float | None = None, kind: str = "message"
    ) -> Decision:
        with self.lock:
            return self.engine.may_contact(sender, recipient, now, kind)

    def save(self, *, only_if_changed: bool = False) -> bool:
        """Write the snapshot (the state is copied under the lock, serialised outside it)."""
        if self.snapshot_path is None:
            return False
        with self._save_lock:
            with self.lock:
                if only_if_changed and not self._dirty:
                    return False
                # By event time, not wall time: replayed or delayed streams keep their counters.
                self.engine.compact(self.engine.latest_ts)
                data = self.engine.snapshot()
                self._dirty = False
            write_snapshot(self.snapshot_path, data)
            self.saves += 1
        return True

    def close(self) -> None:
        """Stop the background saver and save what changed since the last save."""
        self._stop.set()
        self.save(only_if_changed=True)


def _start_saver(svc: SafetyEngineService) -> None:
    ref = weakref.ref(svc)
    stop, interval = svc._stop, svc.snapshot_interval_s

    def run() -> None:
        while not stop.wait(interval):
            s = ref()
            if s is None:
                return
            try:
                s.save(only_if_changed=True)
            except Exception:
                log.exception("saving the contact-rules snapshot failed")
            del s

    threading.Thread(target=run, name="lifeguard-safety-snapshot", daemon=True).start()


def write_snapshot(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
