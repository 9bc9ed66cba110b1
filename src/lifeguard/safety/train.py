"""Train the per-message tactic model: ``python -m lifeguard.safety.train``.

Reads the TRAINING conversations: ``safety/training/train.jsonl`` (synthetic, built by
``python -m lifeguard.safety.training.corpus``), the hand-written ``safety/training/written-*.jsonl``
(eight authors, hard negatives labelled message by message) and, from v4 on, the earlier
evaluation sets tests/data/conversations and conversations_holdout … _holdout5 (other authors and
styles); never tests/data/conversations_holdout6, the blind set. Holds out a quarter of the phrase TEMPLATES (so held-out messages are phrasings the model
never saw; a hand-written message is its own template), fits
one L2-regularised logistic regression per tactic on the rest (full-batch Adam on hashed sparse
features, numpy only) for a few L2 strengths, and on the held-out templates picks the L2
strength and each tactic's threshold (the lowest, but at least 0.5, whose held-out precision is
>= 0.85). It then refits on everything and writes
``safety/data/tactic_model.npz``. Deterministic for a given corpus.
"""

from __future__ import annotations

import argparse
import hashlib
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lifeguard.safety.lexicon import TACTICS, default_lexicon
from lifeguard.safety.model import FeatureSpec, TacticModel, featurize
from lifeguard.safety.normalize import fold
from lifeguard.safety.training.synth import read_jsonl

TRAIN_PATH = Path(__file__).with_name("training") / "train.jsonl"


#: Earlier evaluation sets (written by other sessions, in other styles), used as training data
#: from v4 on; holdout 6 never is.
_TESTS_DATA = Path(__file__).resolve().parents[3] / "tests" / "data"
EARLIER_EVAL_SETS: dict[str, tuple[str, ...]] = {
    "eval": ("conversations",),
    "holdouts-1-4": tuple(f"conversations_holdout{s}" for s in ("", "2", "3", "4")),
    "holdout-5": ("conversations_holdout5",),
}


def handwritten_groups() -> dict[str, list[Path]]:
    """Hand-written training data by author (the unit of cross-validation): the
    ``written-*.jsonl`` files and, where the source tree has them, the earlier evaluation sets."""
    groups = {f.stem: [f] for f in sorted(TRAIN_PATH.parent.glob("written-*.jsonl"))}
    for name, dirs in EARLIER_EVAL_SETS.items():
        files = [f for d in dirs for f in sorted((_TESTS_DATA / d).glob("*.jsonl"))]
        if files:
            groups[name] = files
    return groups


def training_files() -> list[Path]:
    """The synthetic corpus and every hand-written training file, in a fixed order."""
    return [TRAIN_PATH, *(f for fs in handwritten_groups().values() for f in fs)]


OUT_PATH = Path(__file__).with_name("data") / "tactic_model.npz"


def messages(
    convs: list[dict[str, Any]],
) -> tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Unique (folded text, labels) pairs, with the id of the template each came from."""
    seen: dict[tuple[str, tuple[str, ...]], int] = {}
    for c in convs:
        for m in c["messages"]:
            key = (fold(m["text"]), tuple(sorted(m.get("tactics", []))))
            seen.setdefault(key, int(m.get("template", zlib.crc32(m["text"].encode()))))
    texts = [t for t, _ in seen]
    y = np.zeros((len(texts), len(TACTICS)), dtype=np.float32)
    for i, (_, tacs) in enumerate(seen):
        for t in tacs:
            y[i, TACTICS.index(t)] = 1.0
    groups = np.array(list(seen.values()), dtype=np.int64)
    return texts, y, groups


class Sparse:
    """Rows of hashed features as flat arrays (CSR without scipy)."""

    def __init__(self, texts: list[str], spec: FeatureSpec) -> None:
        idx: list[npt.NDArray[np.int64]] = []
        val: list[npt.NDArray[np.float32]] = []
        rows: list[npt.NDArray[np.int64]] = []
        for r, t in enumerate(texts):
            i, v = featurize(t, spec)
            idx.append(i)
            val.append(v)
            rows.append(np.full(len(i), r, dtype=np.int64))
        self.n = len(texts)
        self.idx = np.concatenate(idx)
        self.val = np.concatenate(val)
        self.row = np.concatenate(rows)
        order = np.argsort(self.idx, kind="stable")
        self.f_order = order
        self.f_ids, self.f_starts = np.unique(self.idx[order], return_index=True)

    def dot(self, w: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = np.zeros((self.n, w.shape[1]), dtype=np.float32)
        np.add.at(out, self.row, self.val[:, None] * w[self.idx])
        return out

    def tdot(self, g: npt.NDArray[np.float32], dim: int) -> npt.NDArray[np.float32]:
        contrib = (self.val[:, None] * g[self.row])[self.f_order]
        grad = np.zeros((dim, g.shape[1]), dtype=np.float32)
        grad[self.f_ids] = np.add.reduceat(contrib, self.f_starts, axis=0)
        return grad


def fit(
    x: Sparse,
    y: npt.NDArray[np.float32],
    dim: int,
    *,
    epochs: int = 250,
    lr: float = 0.05,
    l2: float = 1e-4,
    pos_weight: float = 3.0,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    t = y.shape[1]
    w = np.zeros((dim, t), dtype=np.float32)
    b = np.full(t, -3.0, dtype=np.float32)
    mw, vw = np.zeros_like(w), np.zeros_like(w)
    mb, vb = np.zeros_like(b), np.zeros_like(b)
    sw = np.where(y > 0, pos_weight, 1.0).astype(np.float32)
    norm = sw.sum(axis=0)
    for step in range(1, epochs + 1):
        z = x.dot(w) + b
        p = 1.0 / (1.0 + np.exp(-z))
        g = (p - y) * sw / norm
        gw = x.tdot(g, dim) + l2 * w
        gb = g.sum(axis=0)
        for param, grad, m, v in ((w, gw, mw, vw), (b, gb, mb, vb)):
            m *= 0.9
            m += 0.1 * grad
            v *= 0.999
            v += 0.001 * grad * grad
            mhat = m / (1 - 0.9**step)
            vhat = v / (1 - 0.999**step)
            param -= lr * mhat / (np.sqrt(vhat) + 1e-8)
    return w, b


def _pr(pred: npt.NDArray[np.bool_], pos: npt.NDArray[np.bool_]) -> tuple[float, float]:
    tp = float((pred & pos).sum())
    return tp / max(1.0, float(pred.sum())), tp / max(1.0, float(pos.sum()))


def pick_thresholds(
    s: npt.NDArray[np.float32], y: npt.NDArray[np.float32], precision: float
) -> dict[str, float]:
    """Per tactic, the lowest threshold whose held-out precision is >= ``precision``."""
    out: dict[str, float] = {}
    for j, tactic in enumerate(TACTICS):
        best = 0.9
        for thr in np.arange(0.15, 0.91, 0.05):
            prec, _ = _pr(s[:, j] >= thr, y[:, j] > 0)
            if prec >= precision:
                best = float(round(thr, 2))
                break
        out[tactic] = max(0.5, best)
    return out


def _lexicon_matrix(texts: list[str]) -> npt.NDArray[np.float32]:
    lex = default_lexicon()
    out = np.zeros((len(texts), len(TACTICS)), dtype=np.float32)
    for i, t in enumerate(texts):
        for h in lex.hits(t):
            out[i, TACTICS.index(h.tactic)] = 1.0
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, nargs="+", default=None)
    ap.add_argument("--out", type=Path, default=OUT_PATH)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--precision", type=float, default=0.85)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    files: list[Path] = args.train or training_files()
    texts, y, groups = messages([c for f in files for c in read_jsonl(f)])
    dev = groups % 4 == 0  # template-disjoint: dev phrasings are never seen in training
    spec = FeatureSpec()
    x_tr = Sparse([t for t, d in zip(texts, dev, strict=True) if not d], spec)
    d_texts = [t for t, d in zip(texts, dev, strict=True) if d]
    lex_dev = _lexicon_matrix(d_texts)
    best: tuple[float, float, float, dict[str, float]] | None = None
    for l2 in (1e-4, 1e-3):
        w, b = fit(x_tr, y[~dev], spec.dim, epochs=args.epochs, l2=l2)
        m = TacticModel(tactics=TACTICS, weights=w, bias=b, spec=spec)
        p = np.array([[pr[t] for t in TACTICS] for pr in map(m.proba, d_texts)], np.float32)
        for boost in (0.0,):
            sc = np.minimum(1.0, p + boost * lex_dev)
            thr = pick_thresholds(sc, y[dev], args.precision)
            recall = float(
                np.mean(
                    [_pr(sc[:, j] >= thr[t], y[dev][:, j] > 0)[1] for j, t in enumerate(TACTICS)]
                )
            )
            print(f"  l2={l2:g} held-out mean recall={recall:.3f}")
            if best is None or recall > best[0]:
                best = (recall, l2, boost, thr)
    assert best is not None
    recall, l2, boost, thresholds = best
    x_all = Sparse(texts, spec)
    w, b = fit(x_all, y, spec.dim, epochs=args.epochs, l2=l2)
    w[np.abs(w) < 1e-3] = 0.0  # tiny weights -> 0 so the compressed file stays small
    model = TacticModel(tactics=TACTICS, weights=w, bias=b, spec=spec)
    model.thresholds = thresholds
    model.info = {
        "corpus": [f.name for f in files],
        "unique_messages": len(texts),
        "heldout_templates_share": round(float(dev.mean()), 3),
        "l2": l2,
        "epochs": args.epochs,
        "lexicon_boost": boost,
        "heldout_mean_recall": round(recall, 4),
        "heldout_precision_target": args.precision,
        "digest": hashlib.sha256(w.tobytes() + b.tobytes()).hexdigest()[:16],
    }
    model.save(args.out)
    print(f"chose l2={l2:g} lexicon_boost={boost} (held-out mean recall {recall:.3f})")
    print(f"thresholds: {thresholds}")
    print(f"trained on {len(texts)} unique messages in {time.perf_counter() - t0:.1f}s")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
