"""Train the per-message tactic model: ``python -m lifeguard.safety.train``.

Reads the TRAINING conversations (``safety/training/train.jsonl``, built by
``python -m lifeguard.safety.training.corpus``; never the evaluation set in tests/data), splits them
80/20 by conversation id, fits one L2-regularised logistic regression per tactic on the 80 %
(full-batch Adam on hashed sparse features, numpy only), picks each tactic's threshold on the 20 %
(the lowest threshold whose precision there is >= 0.9) and writes ``safety/data/tactic_model.npz``.
Deterministic for a given corpus and seed.
"""

from __future__ import annotations

import argparse
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lifeguard.safety.lexicon import TACTICS
from lifeguard.safety.model import FeatureSpec, TacticModel, featurize
from lifeguard.safety.normalize import fold
from lifeguard.safety.training.synth import read_jsonl

TRAIN_PATH = Path(__file__).with_name("training") / "train.jsonl"
OUT_PATH = Path(__file__).with_name("data") / "tactic_model.npz"


def _is_dev(cid: str) -> bool:
    return zlib.crc32(cid.encode()) % 5 == 0


def messages(convs: list[dict[str, Any]]) -> tuple[list[str], npt.NDArray[np.float32]]:
    """Unique (folded text, labels) pairs."""
    seen: dict[tuple[str, tuple[str, ...]], None] = {}
    for c in convs:
        for m in c["messages"]:
            seen[(fold(m["text"]), tuple(sorted(m.get("tactics", []))))] = None
    texts = [t for t, _ in seen]
    y = np.zeros((len(texts), len(TACTICS)), dtype=np.float32)
    for i, (_, tacs) in enumerate(seen):
        for t in tacs:
            y[i, TACTICS.index(t)] = 1.0
    return texts, y


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


def pick_thresholds(
    p: npt.NDArray[np.float32], y: npt.NDArray[np.float32], precision: float = 0.9
) -> dict[str, float]:
    out: dict[str, float] = {}
    for j, tactic in enumerate(TACTICS):
        best = 0.5
        for thr in np.arange(0.5, 0.91, 0.05):
            pred = p[:, j] >= thr
            tp = float((pred & (y[:, j] > 0)).sum())
            prec = tp / max(1.0, float(pred.sum()))
            if prec >= precision:
                best = float(round(thr, 2))
                break
        out[tactic] = best
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, default=TRAIN_PATH)
    ap.add_argument("--out", type=Path, default=OUT_PATH)
    ap.add_argument("--epochs", type=int, default=250)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    convs = read_jsonl(args.train)
    tr = [c for c in convs if not _is_dev(c["id"])]
    dev = [c for c in convs if _is_dev(c["id"])]
    spec = FeatureSpec()
    x_texts, y = messages(tr)
    d_texts, dy = messages(dev)
    x = Sparse(x_texts, spec)
    w, b = fit(x, y, spec.dim, epochs=args.epochs)
    model = TacticModel(tactics=TACTICS, weights=w, bias=b, spec=spec)
    dp = np.array([[pr[t] for t in TACTICS] for pr in map(model.proba, d_texts)])
    model.thresholds = pick_thresholds(dp, dy)
    model.info = {
        "train_conversations": len(tr),
        "dev_conversations": len(dev),
        "train_messages_unique": len(x_texts),
        "corpus": str(args.train.name),
        "epochs": args.epochs,
    }
    # Zero tiny weights so the compressed file stays small.
    w[np.abs(w) < 1e-3] = 0.0
    model.save(args.out)
    print(f"trained on {len(x_texts)} unique messages in {time.perf_counter() - t0:.1f}s")
    for j, tactic in enumerate(TACTICS):
        thr = model.thresholds[tactic]
        pred = dp[:, j] >= thr
        pos = dy[:, j] > 0
        rec = float((pred & pos).sum()) / max(1, int(pos.sum()))
        prec = float((pred & pos).sum()) / max(1, int(pred.sum()))
        print(f"  {tactic:15s} thr={thr:.2f} dev precision={prec:.3f} recall={rec:.3f}")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
