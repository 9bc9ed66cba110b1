"""Evaluation report for conversation risk scoring: ``python bench/eval_conversation.py``.

Prints, for the evaluation set (tests/data/conversations) and the hand-written holdouts
(tests/data/conversations_holdout, _holdout2 … _holdout6 where present): flag recall, false flags
on hard negatives per category, per-tactic recall / precision, messages to flag, sextortion
flagged at the first threat — for the scorer as shipped (``full``: conversation model with the
sentence embedding), its ``lite`` head (no embedding) and ``v3`` (the hand-set rules, no
conversation model). Then the same without participants' age bands (to show what the bands
contribute), and the time per message.

Options: ``--json PATH`` writes the figures; ``--repeat N`` repeats the timing pass;
``--sets a,b`` limits the sets (names: eval, holdout, holdout2 … holdout6, holdouts_1_to_5);
``--variants full,lite,v3`` limits the variants.
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

from lifeguard.safety.conversation import ConversationScorer, ScoringConfig  # noqa: E402
from lifeguard.safety.convmodel import default_conversation_model  # noqa: E402
from lifeguard.safety.embed import embedding_available  # noqa: E402
from lifeguard.safety.evaluate import format_report, load_dir, report, run  # noqa: E402
from lifeguard.safety.lexicon import default_lexicon  # noqa: E402
from lifeguard.safety.model import default_model  # noqa: E402
from lifeguard.safety.normalize import fold  # noqa: E402

EVAL = ROOT / "tests" / "data" / "conversations"


def strip_bands(convs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        dict(c, participants=[{"id": p["id"]} for p in c.get("participants", [])]) for c in convs
    ]


VARIANTS: dict[str, ScoringConfig] = {
    "full": ScoringConfig(),
    "lite": ScoringConfig(embedding="off"),
    "v3": ScoringConfig.v3(),
}


def timing(convs: list[dict[str, Any]], repeat: int) -> dict[str, float]:
    texts = [m["text"] for c in convs for m in c["messages"]]
    lex, model = default_lexicon(), default_model()
    folded = [fold(t) for t in texts]
    out: dict[str, list[float]] = {"fold": [], "lexicon": [], "model": []}
    for name in VARIANTS:
        out[f"scorer_{name}"] = []
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
        for name, cfg in VARIANTS.items():
            if name == "full" and not embedding_available():
                continue
            t0 = time.perf_counter()
            for c in convs:
                s = ConversationScorer(c.get("participants", []), config=cfg)
                for m in c["messages"]:
                    s.add(m)
            out[f"scorer_{name}"].append(time.perf_counter() - t0)
    n = len(texts)
    res = {f"{k}_ms_per_message": 1000 * statistics.median(v) / n for k, v in out.items() if v}
    res["messages"] = n
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sets", default="")
    ap.add_argument("--variants", default="full,lite,v3")
    ap.add_argument("--no-bands", action="store_true", help="also run without age bands")
    args = ap.parse_args()
    data = ROOT / "tests" / "data"
    named: dict[str, list[dict[str, Any]]] = {"eval": load_dir(EVAL)}
    for i in range(1, 10):
        d = data / ("conversations_holdout" + ("" if i == 1 else str(i)))
        if d.is_dir():
            named["holdout" + ("" if i == 1 else str(i))] = load_dir(d)
    named["holdouts_1_to_5"] = [
        c
        for k in ("holdout", "holdout2", "holdout3", "holdout4", "holdout5")
        for c in named.get(k, [])
    ]
    wanted = [x for x in args.sets.split(",") if x] or [k for k in named if k != "holdouts_1_to_5"]
    variants = [v for v in args.variants.split(",") if v]
    if "full" in variants and not embedding_available():
        print("(all-MiniLM-L6-v2 not installed: skipping the full head)")
        variants.remove("full")
    figures: dict[str, Any] = {}
    for name in wanted:
        convs = named[name]
        for v in variants:
            cfg = VARIANTS[v]
            runs = [(f"{name} [{v}]", convs)]
            if args.no_bands:
                runs.append((f"{name} [{v}] without age bands", strip_bands(convs)))
            for label, cs in runs:
                rep = report(
                    run(
                        cs,
                        lambda c, cfg=cfg: ConversationScorer(
                            c.get("participants", []), config=cfg
                        ),
                    )
                )
                figures[label] = rep
                print(f"=== {label}")
                print(format_report(rep))
                print()
    if args.repeat > 0:
        t = timing(named["eval"], args.repeat)
        figures["timing"] = t
        print(
            "=== time per message (median of {r} passes over {n} eval messages, {py}, {cpu}):".format(
                r=args.repeat, n=t["messages"], py=platform.python_version(), cpu=platform.machine()
            )
        )
        for k, v in t.items():
            if k.endswith("_ms_per_message"):
                print(f"  {k.removesuffix('_ms_per_message'):14s} {v:.3f} ms")
    print(f"message model: {json.dumps(default_model().info, sort_keys=True)}")
    print(f"conversation model: {json.dumps(default_conversation_model().info, sort_keys=True)}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
