"""Per-message tactic model: hashed character n-grams (2-5) and word uni/bigrams of the folded
text, one logistic regression per tactic (numpy only at run time).

The weights ship in ``data/tactic_model.npz`` (written by ``python -m lifeguard.safety.train``)
and load with ``allow_pickle=False``; the metadata (tactics, feature settings, thresholds)
is a JSON string inside the same file.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from lifeguard.errors import LifeguardError

__all__ = ["FeatureSpec", "ModelError", "TacticModel", "default_model", "featurize"]

FloatArray = npt.NDArray[np.float32]
T = TypeVar("T")
IntArray = npt.NDArray[np.int64]


class ModelError(LifeguardError):
    """The model file is missing or malformed."""

    code = "invalid_model"


@dataclass(frozen=True)
class FeatureSpec:
    dim: int = 1 << 16
    char_min: int = 2
    char_max: int = 5
    word_ngrams: int = 2

    def to_json(self) -> dict[str, int]:
        return {
            "dim": self.dim,
            "char_min": self.char_min,
            "char_max": self.char_max,
            "word_ngrams": self.word_ngrams,
        }


def _h(s: str, dim: int) -> int:
    return zlib.crc32(s.encode("utf-8")) % dim


def featurize(folded: str, spec: FeatureSpec) -> tuple[IntArray, FloatArray]:
    """Feature indices and L2-normalised binary values for one folded message."""
    feats: set[int] = set()
    padded = f" {folded} "
    n = len(padded)
    dim = spec.dim
    for k in range(spec.char_min, spec.char_max + 1):
        for i in range(n - k + 1):
            feats.add(_h("c" + padded[i : i + k], dim))
    words = folded.split()
    for k in range(1, spec.word_ngrams + 1):
        for i in range(len(words) - k + 1):
            feats.add(_h("w" + " ".join(words[i : i + k]), dim))
    if not feats:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    idx = np.fromiter(feats, dtype=np.int64, count=len(feats))
    val = np.full(len(idx), 1.0 / np.sqrt(len(idx)), dtype=np.float32)
    return idx, val


@dataclass
class TacticModel:
    tactics: tuple[str, ...]
    weights: FloatArray  # (dim, len(tactics))
    bias: FloatArray  # (len(tactics),)
    spec: FeatureSpec = field(default_factory=FeatureSpec)
    thresholds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def proba(self, folded: str) -> dict[str, float]:
        """Probability per tactic for one folded message."""
        idx, val = featurize(folded, self.spec)
        z = self.bias + (val[:, None] * self.weights[idx]).sum(axis=0)
        p = 1.0 / (1.0 + np.exp(-z))
        return {t: float(p[i]) for i, t in enumerate(self.tactics)}

    def save(self, path: Path) -> None:
        meta = {
            "tactics": list(self.tactics),
            "spec": self.spec.to_json(),
            "thresholds": self.thresholds,
            "info": self.info,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            weights=self.weights.astype(np.float32),
            bias=self.bias.astype(np.float32),
            meta=np.array(json.dumps(meta, sort_keys=True)),
        )

    @classmethod
    def load(cls, path: Path | Any) -> TacticModel:
        try:
            with np.load(path, allow_pickle=False) as z:
                weights = np.asarray(z["weights"], dtype=np.float32)
                bias = np.asarray(z["bias"], dtype=np.float32)
                meta = json.loads(str(z["meta"]))
        except (OSError, KeyError, ValueError) as e:
            raise ModelError(f"cannot load tactic model {path}: {e}") from e
        spec = FeatureSpec(**{k: int(v) for k, v in meta["spec"].items()})
        tactics = tuple(meta["tactics"])
        if weights.shape != (spec.dim, len(tactics)) or bias.shape != (len(tactics),):
            raise ModelError(f"tactic model {path}: weight shapes do not match its metadata")
        return cls(
            tactics=tactics,
            weights=weights,
            bias=bias,
            spec=spec,
            thresholds={k: float(v) for k, v in meta.get("thresholds", {}).items()},
            info=dict(meta.get("info", {})),
        )


MODEL_FILE = "data/tactic_model.npz"


def load_shipped(name: str, load: Callable[[Path], T], trainer: str) -> T:
    """Load a model file shipped in ``lifeguard/safety/`` with ``load``; a missing file says
    which ``python -m`` command writes it."""
    ref = resources.files("lifeguard.safety").joinpath(name)
    with resources.as_file(ref) as p:
        if not p.exists():
            raise ModelError(f"{p} is missing: run `python -m {trainer}`")
        return load(p)


@cache
def default_model() -> TacticModel:
    """The shipped model (``lifeguard/safety/data/tactic_model.npz``)."""
    return load_shipped(MODEL_FILE, TacticModel.load, "lifeguard.safety.train")
