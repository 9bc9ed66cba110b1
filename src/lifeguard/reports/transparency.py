"""Transparency figures for a period, from the review tables (definitions in docs/review.md).

``transparency_report(db, start, end)`` covers ``start <= t < end`` (UTC):

* detections: case items created in the period, by source (hash match, user report, signal), by
  surface and by category; cases opened.
* decisions: the first final decision (confirm / false_positive / no_violation) of each case made
  in the period, by outcome; escalations counted separately.
* false-positive rate: false_positive / all first final decisions in the period (also for cases
  with a hash match).
* median time to action: from case creation to that first final decision (seconds, overall and by
  priority); median time to first review likewise (first assignment or decision).
* law-enforcement reports made in the period, by target and status (submitted / built / failed).
* appeals decided in the period: total, upheld, rejected, upheld rate.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from lifeguard.errors import LifeguardError
from lifeguard.review.intake import ITEM_SURFACES, OUTCOMES, REASONS, SOURCES
from lifeguard.review.models import (
    ReviewAppeal,
    ReviewCase,
    ReviewCaseItem,
    ReviewDecision,
    ReviewLeReport,
)
from lifeguard.store.db import Database


class TransparencyError(LifeguardError):
    code = "invalid_period"


def _utc(t: dt.datetime | dt.date) -> dt.datetime:
    if not isinstance(t, dt.datetime):
        t = dt.datetime(t.year, t.month, t.day)
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _median(xs: list[float]) -> float | None:
    return float(statistics.median(xs)) if xs else None


@dataclass(frozen=True)
class TransparencyReport:
    start: dt.datetime
    end: dt.datetime
    cases_opened: int
    detections_by_source: dict[str, int]
    detections_by_surface: dict[str, int]
    detections_by_category: dict[str, int]
    decisions: dict[str, int]
    escalations: int
    false_positive_rate: float | None
    false_positive_rate_hash_match: float | None
    median_time_to_action_s: float | None
    median_time_to_action_s_by_priority: dict[str, float | None]
    median_time_to_first_review_s: float | None
    le_reports: dict[str, dict[str, int]]
    appeals: dict[str, Any] = field(default_factory=dict)

    @property
    def detections(self) -> int:
        return sum(self.detections_by_source.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "cases_opened": self.cases_opened,
            "detections": {
                "total": self.detections,
                "by_source": dict(self.detections_by_source),
                "by_surface": dict(self.detections_by_surface),
                "by_category": dict(self.detections_by_category),
            },
            "decisions": dict(self.decisions),
            "escalations": self.escalations,
            "false_positive_rate": self.false_positive_rate,
            "false_positive_rate_hash_match": self.false_positive_rate_hash_match,
            "median_time_to_action_s": self.median_time_to_action_s,
            "median_time_to_action_s_by_priority": dict(self.median_time_to_action_s_by_priority),
            "median_time_to_first_review_s": self.median_time_to_first_review_s,
            "le_reports": {k: dict(v) for k, v in self.le_reports.items()},
            "appeals": dict(self.appeals),
        }

    def rows(self) -> list[tuple[str, str, str]]:
        """(metric, key, value) rows: nested mappings flattened with dotted metric names."""
        out: list[tuple[str, str, str]] = []

        def walk(obj: Any, path: str) -> None:
            if isinstance(obj, dict):
                for k, v in obj.items():
                    if isinstance(v, dict):
                        walk(v, f"{path}.{k}" if path else str(k))
                    else:
                        out.append((path or str(k), str(k) if path else "", _cell(v)))
            else:  # pragma: no cover - to_dict is a mapping
                out.append((path, "", _cell(obj)))

        walk(self.to_dict(), "")
        return out

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["metric", "key", "value"])
        w.writerows(self.rows())
        return buf.getvalue()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def transparency_report(
    db: Database, start: dt.datetime | dt.date, end: dt.datetime | dt.date
) -> TransparencyReport:
    t0, t1 = _utc(start), _utc(end)
    if t1 <= t0:
        raise TransparencyError(
            f"the period is empty: end {t1.isoformat()} <= start {t0.isoformat()}"
        )
    with db.read_session() as s:
        items = s.execute(
            select(ReviewCaseItem.source, ReviewCaseItem.surface, ReviewCaseItem.category).where(
                ReviewCaseItem.created_at >= t0, ReviewCaseItem.created_at < t1
            )
        ).all()
        opened = s.execute(
            select(ReviewCase.id).where(ReviewCase.created_at >= t0, ReviewCase.created_at < t1)
        ).all()
        # Every decision of every case with a decision in the period (to find first outcomes).
        decided_cases = select(ReviewDecision.case_id).where(
            ReviewDecision.time >= t0, ReviewDecision.time < t1
        )
        decs = s.execute(
            select(
                ReviewDecision.case_id,
                ReviewDecision.time,
                ReviewDecision.decision,
                ReviewDecision.id,
            )
            .where(ReviewDecision.case_id.in_(decided_cases))
            .order_by(ReviewDecision.case_id, ReviewDecision.time, ReviewDecision.id)
        ).all()
        case_ids = sorted({int(d[0]) for d in decs})
        cases = {
            int(c.id): c
            for c in s.execute(select(ReviewCase).where(ReviewCase.id.in_(case_ids))).scalars()
        }
        match_cases = {
            int(x)
            for (x,) in s.execute(
                select(ReviewCaseItem.case_id)
                .where(ReviewCaseItem.case_id.in_(case_ids), ReviewCaseItem.source == "match")
                .distinct()
            ).all()
        }
        reviewed = s.execute(
            select(ReviewCase.created_at, ReviewCase.first_reviewed_at).where(
                ReviewCase.first_reviewed_at >= t0, ReviewCase.first_reviewed_at < t1
            )
        ).all()
        les = s.execute(
            select(ReviewLeReport.kind, ReviewLeReport.status).where(
                ReviewLeReport.created_at >= t0, ReviewLeReport.created_at < t1
            )
        ).all()
        appeals = s.execute(
            select(ReviewAppeal.upheld).where(
                ReviewAppeal.decided_at >= t0, ReviewAppeal.decided_at < t1
            )
        ).all()

    by_source = dict.fromkeys(SOURCES, 0) | dict(Counter(str(i[0]) for i in items))
    by_surface = dict.fromkeys(ITEM_SURFACES, 0) | dict(Counter(str(i[1]) for i in items))
    by_category = dict.fromkeys(REASONS, 0) | dict(Counter(str(i[2]) for i in items))

    first: dict[int, tuple[dt.datetime, str]] = {}
    escalations = 0
    for case_id, time, decision, _ in decs:
        t = _utc(time)
        if decision == "escalate":
            if t0 <= t < t1:
                escalations += 1
            continue
        if decision in OUTCOMES and int(case_id) not in first:
            first[int(case_id)] = (t, decision)
    first = {k: v for k, v in first.items() if t0 <= v[0] < t1}
    outcomes = dict.fromkeys(OUTCOMES, 0) | dict(Counter(d for _, d in first.values()))
    n = len(first)
    fp_rate = outcomes["false_positive"] / n if n else None
    fm = [d for cid, (_, d) in first.items() if cid in match_cases]
    fp_match = (sum(1 for d in fm if d == "false_positive") / len(fm)) if fm else None
    tta: list[float] = []
    tta_p: dict[int, list[float]] = {1: [], 2: [], 3: []}
    for cid, (t, _) in first.items():
        c = cases[cid]
        secs = (t - _utc(c.created_at)).total_seconds()
        tta.append(secs)
        tta_p.setdefault(c.priority, []).append(secs)
    ttr = [(_utc(b) - _utc(a)).total_seconds() for a, b in reviewed if b is not None]

    le: dict[str, dict[str, int]] = {
        k: {"submitted": 0, "built": 0, "skipped": 0, "failed": 0} for k in ("ncmec", "nca")
    }
    for kind, status in les:
        le.setdefault(kind, {})
        le[kind][status] = le[kind].get(status, 0) + 1
    upheld = sum(1 for (u,) in appeals if u)
    total = len(appeals)
    return TransparencyReport(
        start=t0,
        end=t1,
        cases_opened=len(opened),
        detections_by_source=by_source,
        detections_by_surface=by_surface,
        detections_by_category=by_category,
        decisions=outcomes,
        escalations=escalations,
        false_positive_rate=fp_rate,
        false_positive_rate_hash_match=fp_match,
        median_time_to_action_s=_median(tta),
        median_time_to_action_s_by_priority={f"p{p}": _median(v) for p, v in sorted(tta_p.items())},
        median_time_to_first_review_s=_median(ttr),
        le_reports=le,
        appeals={
            "decided": total,
            "upheld": upheld,
            "rejected": total - upheld,
            "upheld_rate": (upheld / total) if total else None,
        },
    )
