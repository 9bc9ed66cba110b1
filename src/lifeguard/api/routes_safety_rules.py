"""Contact rules and URL/keyword lists over HTTP (scope ``match``: a platform's per-event and
per-message checks, like media matching).

* ``POST /v1/safety/events``: a batch of content-free events (all validated before any is applied);
  answers what they triggered.
* ``POST /v1/safety/may-contact``: may A message (or send a contact request to) B now?
* ``POST /v1/safety/scan-text``: URLs and keywords of the stored lists found in a message's text
  (the text is matched and dropped, never stored).

The engine lives in this process's memory, loaded from ``<data_dir>/safety/engine.json`` on the
first request, saved there by a background thread at most every ``safety_snapshot_interval_s``
seconds after events, and once more at shutdown (:func:`close_engine`).
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from lifeguard.api.problems import Problem
from lifeguard.api.routing import GuardedRoute, scoped
from lifeguard.api.state import get_state
from lifeguard.safety.events import MAX_ID, InvalidEvent, parse_ts
from lifeguard.safety.lists import ListCache, SafetyLists
from lifeguard.safety.rules import RulesError, SafetyEngineService, SnapshotError, load_rules

safety_rules = APIRouter(prefix="/v1/safety", route_class=GuardedRoute)

MAX_EVENTS = 10_000
MAX_TEXT = 65_536
_lock = threading.Lock()


def engine_service(request: Request) -> SafetyEngineService:
    """The app's contact-rules engine (created on first use)."""
    svc: SafetyEngineService | None = getattr(request.app.state, "safety_engine", None)
    if svc is not None:
        return svc
    with _lock:
        svc = getattr(request.app.state, "safety_engine", None)
        if svc is None:
            settings = get_state(request).settings
            try:
                svc = SafetyEngineService(
                    load_rules(settings.safety_rules_file),
                    settings.data_dir / "safety" / "engine.json",
                    settings.safety_snapshot_interval_s,
                )
            except (RulesError, SnapshotError) as e:
                raise Problem(503, "safety_engine_unavailable", e.message) from None
            request.app.state.safety_engine = svc
        return svc


def close_engine(app: Any) -> None:
    """Save the engine's state and stop its saver (called when the app shuts down)."""
    svc: SafetyEngineService | None = getattr(app.state, "safety_engine", None)
    if svc is not None:
        svc.close()


def list_cache(request: Request) -> ListCache:
    cache: ListCache | None = getattr(request.app.state, "safety_lists", None)
    if cache is None:
        with _lock:
            cache = getattr(request.app.state, "safety_lists", None)
            if cache is None:
                cache = ListCache(SafetyLists(get_state(request).db), ttl_s=1.0)
                request.app.state.safety_lists = cache
    return cache


# ------------------------------------------------------------------------------------ schemas
class EventsIn(BaseModel):
    events: list[dict[str, Any]] = Field(
        max_length=MAX_EVENTS,
        description="Events (docs/contact-rules.md): {type: account, ts, account, age_band} or "
        "{type: contact_request|connect|disconnect|message|block|unblock|report, ts, actor, "
        "target}. ts: seconds since the epoch or ISO 8601 with a zone.",
    )


class FindingOut(BaseModel):
    rule: str
    account: str
    action: str
    ts: float
    detail: str


class EventsOut(BaseModel):
    applied: int
    findings: list[FindingOut] = Field(description="What the events triggered (rate, risk).")


Ident = Annotated[str, Field(min_length=1, max_length=MAX_ID)]


class MayContactIn(BaseModel):
    sender: Ident
    recipient: Ident
    kind: Literal["message", "contact_request"] = "message"
    at: float | str | None = Field(
        default=None, description="When (seconds since the epoch or ISO 8601); default now."
    )


class ReasonOut(BaseModel):
    rule: str
    action: str
    detail: str


class DecisionOut(BaseModel):
    allowed: bool = Field(description="False for deny, restrict and require_review.")
    action: Literal["allow", "flag", "require_review", "restrict", "deny"]
    reasons: list[ReasonOut]


class ScanTextIn(BaseModel):
    text: str = Field(max_length=MAX_TEXT)
    obfuscated: bool = Field(
        default=True, description="Also read defanged/spelled-out URLs (example dot com)."
    )


class UrlMatchOut(BaseModel):
    found: str
    canonical: str
    list: str
    kind: Literal["page", "image", "domain"]
    entry: str
    category: str


class KeywordMatchOut(BaseModel):
    found: str
    word: int = Field(description="Index of the first matching word in the folded text.")
    list: str
    entry: str
    category: str


class ScanTextOut(BaseModel):
    urls: list[UrlMatchOut]
    keywords: list[KeywordMatchOut]


# ------------------------------------------------------------------------------------- routes
@safety_rules.post("/events", response_model=EventsOut)
@scoped("match")
async def post_events(request: Request, body: EventsIn) -> dict[str, Any]:
    """Feed events to the contact-rules engine. The batch is validated first: one bad event
    refuses the whole batch (422, naming ``events[i]`` and the field)."""
    svc = engine_service(request)
    found = await run_in_threadpool(svc.ingest, body.events)
    return {"applied": len(body.events), "findings": [f.to_json() for f in found]}


@safety_rules.post("/may-contact", response_model=DecisionOut)
@scoped("match")
async def may_contact(request: Request, body: MayContactIn) -> dict[str, Any]:
    """May ``sender`` contact ``recipient``? The most severe action of the rules that apply."""
    svc = engine_service(request)
    try:
        now = None if body.at is None else parse_ts(body.at, "at")
    except InvalidEvent as e:
        raise Problem(422, "invalid_field", e.message) from None
    d = await run_in_threadpool(svc.may_contact, body.sender, body.recipient, now, body.kind)
    return d.to_json()


@safety_rules.post("/scan-text", response_model=ScanTextOut)
@scoped("match")
async def scan_text(request: Request, body: ScanTextIn) -> dict[str, Any]:
    """URLs (canonicalised) and keywords (obfuscation folded) of the stored lists in ``text``."""
    cache = list_cache(request)

    def run() -> dict[str, Any]:
        urls, keywords = cache.get()
        return {
            "urls": [m.to_json() for m in urls.match_text(body.text, obfuscated=body.obfuscated)],
            "keywords": [m.to_json() for m in keywords.match_text(body.text)],
        }

    return await run_in_threadpool(run)
