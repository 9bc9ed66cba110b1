"""Evaluate the conversation scorer on labelled conversations (see tests/data/conversations).

Figures (all computed from the data):

* ``flag_recall`` — share of conversations labelled ``flag`` that the scorer flags by their end.
* ``false_flag_rate`` — share of hard negatives (``kind == "hard_negative"``) flagged, overall
  and per category.
* ``tactic_recall`` — per tactic, share of conversations whose labels contain the tactic where the
  scorer found it (anywhere in the conversation); ``tactic_message_recall`` — the same per
  labelled message; ``tactic_precision`` — of the messages where the scorer found a tactic,
  the share labelled with it (positive conversations only).
* ``messages_to_flag`` — for flagged positives, the 1-based index of the message at which the
  flag came, and ``after_first_tactic`` — how many messages after the first labelled tactic.
* ``sextortion_at_first_threat`` — of conversations with a labelled ``threat_share`` message,
  the share flagged at or before the first such message.
* ``ms_per_message`` — mean wall time of ``add`` over the whole set.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lifeguard.safety.conversation import ConversationScorer
from lifeguard.safety.lexicon import TACTICS

Conversation = dict[str, Any]


def load_dir(path: Path) -> list[Conversation]:
    """All conversations in ``path/*.jsonl`` (one JSON object a line)."""
    out: list[Conversation] = []
    for f in sorted(path.glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def run(
    convs: Iterable[Conversation],
    make: Callable[[Conversation], ConversationScorer] | None = None,
) -> list[dict[str, Any]]:
    """Score each conversation message by message; one result row per conversation."""
    rows: list[dict[str, Any]] = []
    for c in convs:
        scorer = make(c) if make else ConversationScorer(c.get("participants", []))
        per_msg: list[list[str]] = []
        flag_idx: int | None = None
        sext_idx: int | None = None
        t0 = time.perf_counter()
        a = scorer.assessment()
        for i, m in enumerate(c["messages"]):
            a = scorer.add(m)
            per_msg.append(a.message_tactics)
            if a.flagged and flag_idx is None:
                flag_idx = i
            if a.sextortion and sext_idx is None:
                sext_idx = i
        elapsed = time.perf_counter() - t0
        rows.append(
            {
                "conv": c,
                "final": a,
                "per_msg": per_msg,
                "flag_idx": flag_idx,
                "sext_idx": sext_idx,
                "seconds": elapsed,
            }
        )
    return rows


def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    pos = [r for r in rows if r["conv"]["flag"]]
    negs = [r for r in rows if r["conv"]["kind"] == "hard_negative"]
    flagged_pos = [r for r in pos if r["final"].flagged]
    by_cat: dict[str, list[bool]] = defaultdict(list)
    for r in negs:
        by_cat[r["conv"].get("category", "uncategorised")].append(r["final"].flagged)
    tac_conv: dict[str, list[bool]] = defaultdict(list)
    tac_msg: dict[str, list[bool]] = defaultdict(list)
    tac_pred: dict[str, list[bool]] = defaultdict(list)
    for r in pos:
        labelled: set[str] = set()
        for m, found in zip(r["conv"]["messages"], r["per_msg"], strict=True):
            labelled |= set(m.get("tactics", []))
            for t in m.get("tactics", []):
                tac_msg[t].append(t in found)
            for t in found:
                tac_pred[t].append(t in m.get("tactics", []))
        for t in labelled:
            tac_conv[t].append(t in r["final"].tactics)
    to_flag: list[int] = []
    after_first: list[int] = []
    for r in flagged_pos:
        idx = r["flag_idx"]
        to_flag.append(idx + 1)
        first = next((i for i, m in enumerate(r["conv"]["messages"]) if m.get("tactics")), idx)
        after_first.append(idx - first)
    threat_rows = [
        r
        for r in rows
        if any("threat_share" in m.get("tactics", []) for m in r["conv"]["messages"])
    ]
    at_threat: list[bool] = []
    late: list[str] = []
    for r in threat_rows:
        first = next(
            i for i, m in enumerate(r["conv"]["messages"]) if "threat_share" in m.get("tactics", [])
        )
        ok = r["flag_idx"] is not None and r["flag_idx"] <= first
        at_threat.append(ok)
        if not ok:
            late.append(str(r["conv"].get("id", "?")))
    n_msgs = sum(len(r["conv"]["messages"]) for r in rows)
    secs = sum(r["seconds"] for r in rows)
    kinds: dict[str, int] = defaultdict(int)
    for r in rows:
        kinds[r["conv"]["kind"]] += 1
    return {
        "conversations": len(rows),
        "messages": n_msgs,
        "kinds": dict(kinds),
        "hard_negative_categories": {k: len(v) for k, v in sorted(by_cat.items())},
        "flag_recall": _rate(len(flagged_pos), len(pos)),
        "flag_recall_by_kind": {
            k: _rate(
                sum(r["final"].flagged for r in pos if r["conv"]["kind"] == k),
                sum(1 for r in pos if r["conv"]["kind"] == k),
            )
            for k in sorted({r["conv"]["kind"] for r in pos})
        },
        "false_flag_rate": _rate(sum(r["final"].flagged for r in negs), len(negs)),
        "false_flag_by_category": {k: _rate(sum(v), len(v)) for k, v in sorted(by_cat.items())},
        "false_flag_ids": [str(r["conv"].get("id", "?")) for r in negs if r["final"].flagged],
        "missed_ids": [str(r["conv"].get("id", "?")) for r in pos if not r["final"].flagged],
        "tactic_recall": {t: _rate(sum(tac_conv[t]), len(tac_conv[t])) for t in TACTICS},
        "tactic_support": {t: len(tac_conv[t]) for t in TACTICS},
        "tactic_message_recall": {t: _rate(sum(tac_msg[t]), len(tac_msg[t])) for t in TACTICS},
        "tactic_precision": {t: _rate(sum(tac_pred[t]), len(tac_pred[t])) for t in TACTICS},
        "messages_to_flag": {
            "median": statistics.median(to_flag) if to_flag else None,
            "mean": statistics.fmean(to_flag) if to_flag else None,
            "max": max(to_flag) if to_flag else None,
        },
        "after_first_tactic": {
            "median": statistics.median(after_first) if after_first else None,
            "mean": statistics.fmean(after_first) if after_first else None,
            "max": max(after_first) if after_first else None,
        },
        "sextortion_at_first_threat": _rate(sum(at_threat), len(at_threat)),
        "threat_conversations": len(at_threat),
        "late_threat_ids": late,
        "sextortion_detected": _rate(
            sum(r["final"].sextortion for r in rows if r["conv"].get("sextortion")),
            sum(1 for r in rows if r["conv"].get("sextortion")),
        ),
        "sextortion_false": sum(
            r["final"].sextortion for r in rows if not r["conv"].get("sextortion")
        ),
        "ms_per_message": 1000 * secs / max(1, n_msgs),
    }


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def format_report(rep: dict[str, Any]) -> str:
    lines = [
        f"conversations: {rep['conversations']} ({', '.join(f'{k} {v}' for k, v in sorted(rep['kinds'].items()))}); "
        f"messages: {rep['messages']}",
        f"flag recall: {_f(rep['flag_recall'])}  "
        + "  ".join(f"{k} {_f(v)}" for k, v in rep["flag_recall_by_kind"].items()),
        f"false flags on hard negatives: {_f(rep['false_flag_rate'])}  "
        + "  ".join(
            f"{k} {_f(v)} (n={rep['hard_negative_categories'][k]})"
            for k, v in rep["false_flag_by_category"].items()
        ),
        f"sextortion flagged at or before the first threat: {_f(rep['sextortion_at_first_threat'])}"
        f" of {rep['threat_conversations']}; sextortion detected {_f(rep['sextortion_detected'])};"
        f" sextortion raised on non-sextortion conversations: {rep['sextortion_false']}",
        "messages to flag (1-based index): median {median} mean {mean} max {max}".format(
            **{
                k: (f"{v:.1f}" if isinstance(v, float) else v)
                for k, v in rep["messages_to_flag"].items()
            }
        ),
        "messages after the first labelled tactic: median {median} mean {mean} max {max}".format(
            **{
                k: (f"{v:.1f}" if isinstance(v, float) else v)
                for k, v in rep["after_first_tactic"].items()
            }
        ),
        "",
        f"{'tactic':16s} {'conv recall':>11s} {'msg recall':>10s} {'msg precision':>13s} {'support':>8s}",
    ]
    for t in TACTICS:
        lines.append(
            f"{t:16s} {_f(rep['tactic_recall'][t]):>11s} {_f(rep['tactic_message_recall'][t]):>10s}"
            f" {_f(rep['tactic_precision'][t]):>13s} {rep['tactic_support'][t]:>8d}"
        )
    lines.append("")
    lines.append(
        f"ms per message (fold + lexicon + model + aggregation): {rep['ms_per_message']:.3f}"
    )
    if rep["missed_ids"]:
        lines.append(f"missed: {', '.join(rep['missed_ids'])}")
    if rep["false_flag_ids"]:
        lines.append(f"false flags: {', '.join(rep['false_flag_ids'])}")
    if rep["late_threat_ids"]:
        lines.append(f"threat flagged late: {', '.join(rep['late_threat_ids'])}")
    return "\n".join(lines)
