"""Evaluation report for conversation risk scoring: ``python bench/eval_conversation.py``.

Prints, for the evaluation set (tests/data/conversations) and the hand-written holdouts
(tests/data/conversations_holdout, _holdout2 … _holdout5 where present): flag recall, false flags on hard negatives per category,
per-tactic recall / precision, messages to flag, sextortion flagged at the first threat. Then the
same without participants' age bands (to show what the bands contribute), and the time per
message split into fold / lexicon / model / whole scorer.

Options: ``--json PATH`` writes the figures; ``--repeat N`` repeats the timing pass.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lifeguard.safety.conversation import ConversationScorer  # noqa: E402
from lifeguard.safety.evaluate import format_report, load_dir, report, run  # noqa: E402
from lifeguard.safety.lexicon import default_lexicon  # noqa: E402
from lifeguard.safety.model import default_model  # noqa: E402
from lifeguard.safety.normalize import fold  # noqa: E402

EVAL = ROOT / "tests" / "data" / "conversations"
HOLDOUT = ROOT / "tests" / "data" / "conversations_holdout"
HOLDOUT2 = ROOT / "tests" / "data" / "conversations_holdout2"
HOLDOUT3 = ROOT / "tests" / "data" / "conversations_holdout3"
HOLDOUT4 = ROOT / "tests" / "data" / "conversations_holdout4"
HOLDOUT5 = ROOT / "tests" / "data" / "conversations_holdout5"


def strip_bands(convs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        dict(c, participants=[{"id": p["id"]} for p in c.get("participants", [])]) for c in convs
    ]


def timing(convs: list[dict[str, Any]], repeat: int) -> dict[str, float]:
    texts = [m["text"] for c in convs for m in c["messages"]]
    lex, model = default_lexicon(), default_model()
    folded = [fold(t) for t in texts]
    out: dict[str, list[float]] = {"fold": [], "lexicon": [], "model": [], "scorer": []}
    for _ in range(repeat):
        t0 = time.perf_counter()
        for t in texts:
            fold(t)
        out["fold"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for f in folded:
            lex.hits(f)
        out["lexicon"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for f in folded:
            model.proba(f)
        out["model"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for c in convs:
            s = ConversationScorer(c.get("participants", []))
            for m in c["messages"]:
                s.add(m)
        out["scorer"].append(time.perf_counter() - t0)
    n = len(texts)
    res = {f"{k}_ms_per_message": 1000 * statistics.median(v) / n for k, v in out.items()}
    res["messages"] = n
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ev = load_dir(EVAL)
    hold, hold2, hold3 = load_dir(HOLDOUT), load_dir(HOLDOUT2), load_dir(HOLDOUT3)
    hold4 = load_dir(HOLDOUT4)
    figures: dict[str, Any] = {}
    sets: list[tuple[str, list[dict[str, Any]]]] = [
        ("eval", ev),
        ("holdout", hold),
        ("holdout2", hold2),
        ("holdout3", hold3),
        ("holdouts_1_to_3", hold + hold2 + hold3),
        ("holdout4", hold4),
        ("eval_without_age_bands", strip_bands(ev)),
        ("holdouts_1_to_3_without_age_bands", strip_bands(hold + hold2 + hold3)),
        ("holdout4_without_age_bands", strip_bands(hold4)),
    ]
    hold5 = load_dir(HOLDOUT5) if HOLDOUT5.is_dir() else []
    if hold5:
        sets += [("holdout5", hold5), ("holdout5_without_age_bands", strip_bands(hold5))]
    for name, convs in sets:
        rep = report(run(convs))
        figures[name] = rep
        print(f"=== {name}")
        print(format_report(rep))
        print()
    t = timing(ev, args.repeat)
    figures["timing"] = t
    print(
        "=== time per message (median of {r} passes over {n} eval messages, {py}, {cpu}):".format(
            r=args.repeat, n=t["messages"], py=platform.python_version(), cpu=platform.machine()
        )
    )
    for k in ("fold", "lexicon", "model", "scorer"):
        print(f"  {k:8s} {t[k + '_ms_per_message']:.3f} ms")
    model = default_model()
    print(f"model: {json.dumps(model.info, sort_keys=True)}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
