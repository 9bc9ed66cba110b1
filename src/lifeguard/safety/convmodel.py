"""The conversation model: one logistic regression over per-sender features, trained on labelled
conversations (``python -m lifeguard.safety.train_conversation``).

The message layer (lexicon + n-gram model, :mod:`lifeguard.safety.conversation`) finds tactics;
this layer decides whether a sender's conversation so far is grooming or sextortion. Its inputs,
all kept per sender as the conversation goes (see :class:`SenderStats`):

* which tactics the sender has shown (age counts for everyone once anyone shows it), and the
  strongest per-tactic message score so far;
* counts over the sender's messages: how many showed a tactic, were in reported speech
  ("they ask how old you are"), mention family members, address the reader; whether the OTHER
  participants pushed back ("stop", "leave me alone", "I don't have money");
* the hand-written rule score and sextortion escalation, the age gap and the age bands;
* optionally (the ``full`` head) the mean all-MiniLM-L6-v2 sentence embedding of the sender's
  messages (:mod:`lifeguard.safety.embed`). Only its projection on the model's weights is kept
  (one number per sender), never the embedding or the text.

Two heads ship in ``data/conversation_model.npz`` (``allow_pickle=False``): ``full`` (with the
embedding term) and ``lite`` (without; used when the embedding model is not installed, e.g. on a
small device). Each has its own two thresholds, chosen in training: a sender is flagged at
``threshold``, or at ``sextortion_threshold`` once the rules see sextortion from them (so a threat
is flagged when it is made).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lifeguard.safety.lexicon import TACTICS
from lifeguard.safety.model import ModelError, load_shipped

__all__ = [
    "FEATURES",
    "ConversationModel",
    "Head",
    "SenderStats",
    "default_conversation_model",
]

FloatArray = npt.NDArray[np.float64]

FEATURES: tuple[str, ...] = (
    *(f"has_{t}" for t in TACTICS),
    *(f"max_{t}" for t in TACTICS),
    "family_share",
    "pushback",
    "second_person_share",
    "tactics_found",
    "strong_grooming_found",
    "age_gap",
    "peers_only",
    "adults_only",
    "log_messages",
    "tactic_message_share",
    "reported_share",
    "rule_score",
    "rule_sextortion",
)


@dataclass
class SenderStats:
    """What the conversation model keeps about one sender (numbers only, no text)."""

    n: int = 0
    maxs: list[float] = field(default_factory=lambda: [0.0] * len(TACTICS))
    tactic_messages: int = 0
    reported: int = 0
    family: int = 0
    pushback: int = 0
    second_person: int = 0
    emb_proj: float = 0.0  # sum over messages of <embedding, full head's embedding weights>
    emb_n: int = 0  # messages whose embedding went into emb_proj

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "maxs": [round(x, 5) for x in self.maxs],
            "tm": self.tactic_messages,
            "rep": self.reported,
            "fam": self.family,
            "push": self.pushback,
            "you": self.second_person,
            "ep": round(self.emb_proj, 6),
            "en": self.emb_n,
        }

    @classmethod
    def from_json(cls, obj: Any) -> SenderStats:
        if not isinstance(obj, dict):
            raise ValueError("sender stats must be an object")
        maxs = [float(x) for x in obj.get("maxs", [])]
        if len(maxs) != len(TACTICS) or not all(0.0 <= x <= 1.0 for x in maxs):
            raise ValueError(f"sender stats: 'maxs' needs {len(TACTICS)} numbers in [0, 1]")
        out = cls(
            n=int(obj.get("n", 0)),
            maxs=maxs,
            tactic_messages=int(obj.get("tm", 0)),
            reported=int(obj.get("rep", 0)),
            family=int(obj.get("fam", 0)),
            pushback=int(obj.get("push", 0)),
            second_person=int(obj.get("you", 0)),
            emb_proj=float(obj.get("ep", 0.0)),
            emb_n=int(obj.get("en", 0)),
        )
        counts = (out.tactic_messages, out.reported, out.family, out.second_person, out.emb_n)
        if out.n < 0 or any(c < 0 or c > out.n for c in counts) or out.pushback < 0:
            raise ValueError("sender stats: counts out of range")
        if not math.isfinite(out.emb_proj):
            raise ValueError("sender stats: 'ep' must be finite")
        return out


@dataclass(frozen=True)
class Head:
    weights: FloatArray  # (len(FEATURES),)
    bias: float
    threshold: float
    # a sender the rules see as sextortion (threat, or claim + demand/deadline) flags from here
    sextortion_threshold: float
    embedding: FloatArray | None = None  # (384,) for the full head

    def logit(self, features: FloatArray, emb_mean_proj: float = 0.0) -> float:
        return float(features @ self.weights) + self.bias + emb_mean_proj

    def proba(self, features: FloatArray, emb_mean_proj: float = 0.0) -> float:
        z = self.logit(features, emb_mean_proj)
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


@dataclass(frozen=True)
class ConversationModel:
    full: Head
    lite: Head
    info: dict[str, Any]

    def save(self, path: Path) -> None:
        assert self.full.embedding is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "features": list(FEATURES),
            "full": {
                "bias": self.full.bias,
                "threshold": self.full.threshold,
                "sextortion_threshold": self.full.sextortion_threshold,
            },
            "lite": {
                "bias": self.lite.bias,
                "threshold": self.lite.threshold,
                "sextortion_threshold": self.lite.sextortion_threshold,
            },
            "info": self.info,
        }
        np.savez_compressed(
            path,
            full_weights=self.full.weights,
            full_embedding=self.full.embedding,
            lite_weights=self.lite.weights,
            meta=np.array(json.dumps(meta, sort_keys=True)),
        )

    @classmethod
    def load(cls, path: Path | Any) -> ConversationModel:
        try:
            with np.load(path, allow_pickle=False) as z:
                fw = np.asarray(z["full_weights"], dtype=np.float64)
                fe = np.asarray(z["full_embedding"], dtype=np.float64)
                lw = np.asarray(z["lite_weights"], dtype=np.float64)
                meta = json.loads(str(z["meta"]))
        except (OSError, KeyError, ValueError) as e:
            raise ModelError(f"cannot load conversation model {path}: {e}") from e
        if tuple(meta.get("features", ())) != FEATURES:
            raise ModelError(f"conversation model {path}: its features are not this version's")
        if fw.shape != (len(FEATURES),) or lw.shape != (len(FEATURES),) or fe.shape != (384,):
            raise ModelError(f"conversation model {path}: weight shapes do not match")
        try:
            full = Head(
                fw,
                float(meta["full"]["bias"]),
                float(meta["full"]["threshold"]),
                float(meta["full"]["sextortion_threshold"]),
                fe,
            )
            lite = Head(
                lw,
                float(meta["lite"]["bias"]),
                float(meta["lite"]["threshold"]),
                float(meta["lite"]["sextortion_threshold"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"conversation model {path}: bad metadata: {e}") from e
        return cls(full=full, lite=lite, info=dict(meta.get("info", {})))


CONVERSATION_MODEL_FILE = "data/conversation_model.npz"


@cache
def default_conversation_model() -> ConversationModel:
    """The shipped conversation model (``lifeguard/safety/data/conversation_model.npz``)."""
    return load_shipped(
        CONVERSATION_MODEL_FILE, ConversationModel.load, "lifeguard.safety.train_conversation"
    )
