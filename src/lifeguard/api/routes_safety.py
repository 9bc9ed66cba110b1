"""``POST /v1/safety/conversation``: grooming / sextortion risk of a conversation.

Scope ``match``. Stateless on the server: the client sends new messages plus the ``state`` the
previous call returned (message ids, tactic names and stated ages, never message text), and gets
the updated assessment and state back. Nothing is stored; texts are scored and dropped.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from lifeguard.api.problems import Problem
from lifeguard.api.routing import GuardedRoute, scoped
from lifeguard.api.state import get_state
from lifeguard.safety.conversation import MAX_TEXT_CHARS, ConversationScorer, ScoringConfig
from lifeguard.safety.embed import EmbedUnavailable
from lifeguard.safety.model import ModelError

safety = APIRouter(prefix="/v1/safety", route_class=GuardedRoute)

MAX_MESSAGES = 1000


class ParticipantIn(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    role: str | None = Field(default=None, max_length=100)
    age_band: str | None = Field(
        default=None,
        max_length=20,
        description="Known age band: 'minor', '10-12', '13-15', '16-17', 'adult', '18+' ...",
    )


class MessageIn(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    sender: str = Field(min_length=1, max_length=200)
    text: str = Field(max_length=MAX_TEXT_CHARS)
    t: float | None = Field(default=None, description="Send time (any monotonic unit).")


class ConversationIn(BaseModel):
    messages: list[MessageIn] = Field(max_length=MAX_MESSAGES)
    participants: list[ParticipantIn] = Field(default_factory=list, max_length=50)
    state: dict[str, Any] | None = Field(
        default=None, description="The `state` a previous call returned, to continue from."
    )


class MessageOut(BaseModel):
    id: str
    tactics: list[str]


class ConversationOut(BaseModel):
    score: float = Field(description="0..1")
    level: str = Field(description="none | low | medium | high")
    flagged: bool
    sextortion: bool
    tactics: list[str]
    evidence_message_ids: list[str]
    evidence: dict[str, list[str]] = Field(description="Tactic -> ids of the messages showing it.")
    age_gap: bool
    messages_seen: int
    flagged_at: str | None = Field(description="Id of the message at which the flag came.")
    messages: list[MessageOut] = Field(description="Tactics found in each message of this call.")
    state: dict[str, Any] = Field(description="Send back with the next messages.")


@safety.post(
    "/conversation",
    tags=["safety"],
    summary="Score a conversation (incrementally) for grooming and sextortion tactics",
    response_model=ConversationOut,
)
@scoped("match")
def conversation(body: ConversationIn, request: Request) -> dict[str, Any]:
    parts = [p.model_dump(exclude_none=True) for p in body.participants]
    cfg = ScoringConfig(embedding=get_state(request).settings.conversation_embedding)
    try:
        if body.state is not None:
            scorer = ConversationScorer.from_json(body.state, config=cfg)
            scorer.add_participants(parts)
        else:
            scorer = ConversationScorer(parts, config=cfg)
    except (EmbedUnavailable, ModelError) as e:
        # a server-side fault (a missing or tampered model file), not the caller's
        raise Problem(503, e.code, e.message, title="Conversation scoring unavailable") from None
    done = scorer.add_each([m.model_dump() for m in body.messages])
    per = [
        {"id": m.id, "tactics": a.message_tactics} for m, a in zip(body.messages, done, strict=True)
    ]
    a = done[-1] if done else scorer.assessment()
    out = a.to_json()
    out.pop("message_id", None)
    out.pop("message_tactics", None)
    out["messages"] = per
    out["state"] = scorer.to_json()
    return out
