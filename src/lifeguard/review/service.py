"""The review service: cases from hash matches and user reports, the moderator queue, decisions,
appeals and law-enforcement reports (docs/review.md).

Every change to a case is made against an ``expected_version`` (optimistic locking: a conditional
``UPDATE ... WHERE version = :expected``), so two reviewers can never decide one case twice; the
loser gets :class:`~lifeguard.errors.Conflict` (409). Every assignment, decision, appeal and
law-enforcement report is written to the hash-chained audit log in the same transaction.

Decision effects (bank entries, webhook events, deleting attached media) run after the decision is
committed, because the bank service and the evidence vault use their own transactions; what they did
is recorded on the decision (``effects``) and in the case history.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import mimetypes
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session

from lifeguard.actions.events import record_match
from lifeguard.actions.models import MatchEvent
from lifeguard.banks.service import Banks, aware
from lifeguard.errors import Conflict, Forbidden, LifeguardError, MediaError, NotFound
from lifeguard.matching.results import Match, MatchResult
from lifeguard.reports import audit
from lifeguard.reports.evidence import EvidenceVault
from lifeguard.reports.models import EvidenceItem
from lifeguard.review.intake import (
    ACTIVE,
    DECISIONS,
    MAX_ID,
    MAX_MEDIA,
    REASONS,
    STATUSES,
    ContentRef,
    ReviewError,
    UserReportIn,
    check_ref,
    check_text,
    item_priority,
)
from lifeguard.review.le import LeSettings
from lifeguard.review.models import (
    ReviewAppeal,
    ReviewCase,
    ReviewCaseEvent,
    ReviewCaseItem,
    ReviewDecision,
    ReviewIngested,
    ReviewLeReport,
    ReviewReport,
)
from lifeguard.review.roles import Actor, Role
from lifeguard.settings import Settings
from lifeguard.store.db import Database
from lifeguard.store.models import utcnow

__all__ = [
    "CaseEventView",
    "CaseItemView",
    "CaseSummary",
    "CaseView",
    "ContentRef",
    "LeReportView",
    "ReviewError",
    "ReviewService",
    "UserReportIn",
]

#: PostgreSQL advisory lock serialising case creation/merging (SQLite's writers are serial anyway).
_INTAKE_LOCK = 0x6C67726576696577  # "lgreview"
_SYSTEM = "system:review"


def evidence_case_id(case_id: int) -> str:
    """The evidence vault's case id for a review case."""
    return f"review-case-{case_id}"


def _check_id(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReviewError(f"{what} id: expected an integer, got {value!r}")
    if not 1 <= value <= MAX_ID:
        raise NotFound(f"{what} {value} not found")
    return value


# --------------------------------------------------------------------------------------- views


@dataclass(frozen=True)
class CaseSummary:
    id: int
    priority: int
    category: str
    surface: str
    status: str
    created_at: dt.datetime
    first_review_due: dt.datetime
    assigned_to: str | None
    item_count: int
    version: int
    first_reviewed_at: dt.datetime | None = None
    overdue: bool = False
    escalated: bool = False
    decision: str | None = None
    reported_account: str | None = None
    child_at_risk_now: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(_jsonable(self.__dict__))


@dataclass(frozen=True)
class CaseItemView:
    id: int
    kind: str  # media | hash | account | message
    content_ref: str | None
    has_media: bool
    mime: str | None
    hashes: dict[str, str]
    match: dict[str, Any] | None
    source: str = "report"
    category: str = ""
    surface: str = "unknown"
    priority: int = 3
    created_at: dt.datetime | None = None
    report_id: int | None = None
    media_deleted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(_jsonable(self.__dict__))


@dataclass(frozen=True)
class CaseEventView:
    id: int
    time: dt.datetime
    actor: str
    action: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(_jsonable(self.__dict__))


@dataclass(frozen=True)
class CaseView(CaseSummary):
    """A case with its items, history, decisions, appeals, reports and LE reports."""

    decided_by: str | None = None
    decided_at: dt.datetime | None = None
    items: list[CaseItemView] = field(default_factory=list)
    history: list[CaseEventView] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    appeals: list[dict[str, Any]] = field(default_factory=list)
    le_reports: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def summary(self) -> CaseSummary:
        return CaseSummary(**{k: getattr(self, k) for k in CaseSummary.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["items"] = [i.to_dict() for i in self.items]
        d["history"] = [h.to_dict() for h in self.history]
        return dict(_jsonable(d))


@dataclass(frozen=True)
class LeReportView:
    id: int
    case_id: int
    kind: str
    status: str  # built | submitted | skipped
    reference: str
    priority: int | None
    document: str
    actor: str
    created_at: dt.datetime
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(_jsonable(self.__dict__))


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return aware(v).isoformat()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _opt(t: dt.datetime | None) -> dt.datetime | None:
    return aware(t) if t is not None else None


def _summary(c: ReviewCase, item_count: int, now: dt.datetime) -> CaseSummary:
    due = aware(c.first_review_due)
    return CaseSummary(
        id=int(c.id),
        priority=c.priority,
        category=c.category,
        surface=c.surface,
        status=c.status,
        created_at=aware(c.created_at),
        first_review_due=due,
        assigned_to=c.assigned_to,
        item_count=item_count,
        version=c.version,
        first_reviewed_at=_opt(c.first_reviewed_at),
        overdue=c.first_reviewed_at is None and c.status in ACTIVE and now > due,
        escalated=bool(c.escalated),
        decision=c.decision,
        reported_account=c.reported_account,
        child_at_risk_now=bool(c.child_at_risk_now),
    )


def _item_view(i: ReviewCaseItem) -> CaseItemView:
    hashes = {k: v for k in ("md5", "sha256", "pdq") if (v := getattr(i, k))}
    return CaseItemView(
        id=int(i.id),
        kind=i.kind,
        content_ref=i.content_ref,
        has_media=i.evidence_id is not None and not i.media_deleted,
        mime=i.mime,
        hashes=hashes,
        match=dict(i.match) if i.match else None,
        source=i.source,
        category=i.category,
        surface=i.surface,
        priority=i.priority,
        created_at=aware(i.created_at),
        report_id=int(i.report_id) if i.report_id is not None else None,
        media_deleted=bool(i.media_deleted),
    )


# --------------------------------------------------------------------------------------- items


@dataclass
class _NewItem:
    source: str
    kind: str
    category: str
    surface: str
    priority: int
    content_ref: str | None = None
    md5: str | None = None
    sha256: str | None = None
    pdq: str | None = None
    match_event_id: int | None = None
    match: dict[str, Any] | None = None
    mime: str | None = None
    media: bytes | None = None
    media_name: str = ""

    def row(self, case_id: int, report_id: int | None, now: dt.datetime) -> ReviewCaseItem:
        return ReviewCaseItem(
            case_id=case_id,
            created_at=now,
            source=self.source,
            kind=self.kind,
            category=self.category,
            surface=self.surface,
            priority=self.priority,
            content_ref=self.content_ref,
            md5=self.md5,
            sha256=self.sha256,
            pdq=self.pdq,
            match_event_id=self.match_event_id,
            match=self.match,
            report_id=report_id,
            mime=self.mime,
            media_deleted=False,
        )


def _mime_of(name: str, fmt: str | None) -> str:
    if fmt:
        try:
            from PIL import Image

            m = Image.MIME.get(fmt.upper())
            if m:
                return m
        except ImportError:  # pragma: no cover - Pillow is a dependency
            pass
    guess, _ = mimetypes.guess_type(name)
    return guess or "application/octet-stream"


# --------------------------------------------------------------------------------------- service


class ReviewService:
    """Cases, queue, decisions, appeals and law-enforcement reports over one :class:`Database`."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        vault: EvidenceVault | None = None,
        banks: Banks | None = None,
        le: LeSettings | None = None,
    ) -> None:
        self.db = db
        self.le = le
        self.settings = settings
        self.vault = vault or EvidenceVault.from_settings(db, settings)
        self.banks = banks or Banks(db)

    # -- helpers ---------------------------------------------------------------------------

    def target(self, priority: int) -> dt.timedelta:
        """Time-to-first-review target for a priority (Settings ``review_target_p<n>_hours``)."""
        hours = {
            1: self.settings.review_target_p1_hours,
            2: self.settings.review_target_p2_hours,
        }.get(priority, self.settings.review_target_p3_hours)
        return dt.timedelta(hours=hours)

    def _lock_intake(self, s: Session) -> None:
        if self.db.dialect == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _INTAKE_LOCK})

    @staticmethod
    def _event(
        s: Session, case_id: int, actor: str, action: str, details: dict[str, Any], now: dt.datetime
    ) -> None:
        s.add(
            ReviewCaseEvent(case_id=case_id, time=now, actor=actor, action=action, details=details)
        )

    @staticmethod
    def _audit(s: Session, actor: str, action: str, case_id: int, details: dict[str, Any]) -> None:
        audit.record(
            s,
            actor=actor,
            action=action,
            subject_type="review_case",
            subject_id=case_id,
            details=details,
        )

    def _find_open_case(
        self, s: Session, items: Sequence[_NewItem], account: str | None
    ) -> ReviewCase | None:
        """The oldest active case sharing a content id, a hash or the reported account."""
        refs = {i.content_ref for i in items if i.content_ref}
        conds: list[Any] = []
        if refs:
            conds.append(ReviewCaseItem.content_ref.in_(refs))
        for k in ("md5", "sha256", "pdq"):
            vals = {getattr(i, k) for i in items if getattr(i, k)}
            if vals:
                conds.append(getattr(ReviewCaseItem, k).in_(vals))
        ids: list[int] = []
        if conds:
            q = (
                select(func.min(ReviewCaseItem.case_id))
                .join(ReviewCase, ReviewCase.id == ReviewCaseItem.case_id)
                .where(ReviewCase.status.in_(ACTIVE), or_(*conds))
            )
            v = s.execute(q).scalar_one_or_none()
            if v is not None:
                ids.append(int(v))
        if account:
            v = s.execute(
                select(func.min(ReviewCase.id)).where(
                    ReviewCase.status.in_(ACTIVE), ReviewCase.reported_account == account
                )
            ).scalar_one_or_none()
            if v is not None:
                ids.append(int(v))
        if not ids:
            return None
        return s.execute(
            select(ReviewCase).where(ReviewCase.id == min(ids)).with_for_update()
        ).scalar_one()

    def _place(
        self,
        s: Session,
        items: Sequence[_NewItem],
        *,
        account: str | None,
        child_at_risk_now: bool,
        detected_at: dt.datetime,
        actor: str,
        report_id: int | None,
        now: dt.datetime,
    ) -> tuple[ReviewCase, list[ReviewCaseItem], bool]:
        """Add items to the matching active case (merge) or a new one. Returns (case, item rows,
        merged)."""
        top = min(items, key=lambda i: i.priority)
        case = self._find_open_case(s, items, account)
        merged = case is not None
        if case is None:
            case = ReviewCase(
                status="open",
                priority=top.priority,
                category=top.category,
                surface=top.surface,
                child_at_risk_now=child_at_risk_now,
                reported_account=account,
                created_at=detected_at,
                updated_at=now,
                first_review_due=detected_at + self.target(top.priority),
                escalated=False,
                version=1,
            )
            s.add(case)
            s.flush()
        else:
            before = case.priority
            if top.priority < case.priority:
                case.priority = top.priority
                case.category = top.category
                due = detected_at + self.target(top.priority)
                if due < aware(case.first_review_due):
                    case.first_review_due = due
            if case.surface == "unknown" and top.surface != "unknown":
                case.surface = top.surface
            case.child_at_risk_now = bool(case.child_at_risk_now or child_at_risk_now)
            if case.reported_account is None and account:
                case.reported_account = account
            case.version += 1
            case.updated_at = now
            if case.priority != before:
                self._event(
                    s,
                    int(case.id),
                    actor,
                    "priority",
                    {"from": before, "to": case.priority},
                    now,
                )
        rows = [i.row(int(case.id), report_id, now) for i in items]
        s.add_all(rows)
        s.flush()
        self._event(
            s,
            int(case.id),
            actor,
            "merged" if merged else "created",
            {"items": [int(r.id) for r in rows], "source": top.source, "report_id": report_id},
            now,
        )
        return case, rows, merged

    # -- intake ----------------------------------------------------------------------------

    def submit_report(
        self,
        report: UserReportIn,
        media: Sequence[tuple[str, bytes]] = (),
        *,
        received_by: str = "",
    ) -> CaseView:
        """Take in a user report: its content references, reported account and attached media
        (stored only in the encrypted evidence vault, linked to the case). Returns the case the
        report went to (a new one, or an active case for the same content/account)."""
        if len(media) > MAX_MEDIA:
            raise ReviewError(f"media: {len(media)} files, at most {MAX_MEDIA} per report")
        prio = report.priority
        items: list[_NewItem] = []
        for c in report.content:
            h = c.hashes()
            items.append(
                _NewItem(
                    source="report",
                    kind="hash" if h else "message",
                    category=report.reason,
                    surface=report.surface,
                    priority=prio,
                    content_ref=c.content_id,
                    md5=c.md5,
                    sha256=c.sha256,
                    pdq=c.pdq,
                )
            )
        for name, data in media:
            items.append(self._media_item(name, data, report, prio))
        if not items:
            if not report.reported_account:
                raise ReviewError("a report needs content references, media or a reported account")
            items.append(
                _NewItem(
                    source="report",
                    kind="account",
                    category=report.reason,
                    surface=report.surface,
                    priority=prio,
                    content_ref=None,
                )
            )
        if media:
            _ = self.vault.keyring  # fail before writing anything if no vault key is configured
        now = utcnow()
        actor = received_by or f"reporter:{report.reporter}"
        with self.db.session() as s:
            self._lock_intake(s)
            rep = ReviewReport(
                created_at=now,
                reporter=report.reporter,
                reported_account=report.reported_account,
                surface=report.surface,
                reason=report.reason,
                child_at_risk_now=report.child_at_risk_now,
                description=report.description,
                received_by=received_by,
            )
            s.add(rep)
            s.flush()
            case, rows, merged = self._place(
                s,
                items,
                account=report.reported_account,
                child_at_risk_now=report.child_at_risk_now,
                detected_at=now,
                actor=actor,
                report_id=int(rep.id),
                now=now,
            )
            rep.case_id = case.id
            case_id = int(case.id)
            self._audit(
                s,
                actor,
                "review.report",
                case_id,
                {
                    "report_id": int(rep.id),
                    "reason": report.reason,
                    "surface": report.surface,
                    "child_at_risk_now": report.child_at_risk_now,
                    "items": len(rows),
                    "media": len(media),
                    "merged": merged,
                    "priority": case.priority,
                },
            )
            media_rows = [(int(r.id), it) for r, it in zip(rows, items, strict=True) if it.media]
        for item_id, it in media_rows:
            assert it.media is not None
            info = self.vault.put(
                evidence_case_id(case_id),
                it.media,
                actor=actor,
                content_id=it.content_ref or "",
                media_type=it.mime or "application/octet-stream",
                metadata={"review_item": item_id, "name": it.media_name[:256]},
            )
            with self.db.session() as s:
                s.execute(
                    update(ReviewCaseItem)
                    .where(ReviewCaseItem.id == item_id)
                    .values(evidence_id=info.id)
                )
        return self.get_case(case_id)

    def _media_item(self, name: str, data: bytes, report: UserReportIn, prio: int) -> _NewItem:
        from lifeguard.signals.hasher import hash_bytes

        if not isinstance(data, bytes) or not data:
            raise ReviewError(f"media {name!r}: empty")
        if len(data) > self.settings.max_file_bytes:
            raise ReviewError(f"media {name!r}: over {self.settings.max_file_bytes:,} bytes")
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        sha = hashlib.sha256(data).hexdigest()
        pdq: str | None = None
        fmt: str | None = None
        try:
            h = hash_bytes(data, name or "upload", self.settings)
            pdq, fmt = h.pdq, h.format
        except MediaError:
            pass  # not an image/video we can hash perceptually: the digests still identify it
        return _NewItem(
            source="report",
            kind="media",
            category=report.reason,
            surface=report.surface,
            priority=prio,
            content_ref=None,
            md5=md5,
            sha256=sha,
            pdq=pdq,
            mime=_mime_of(name, fmt),
            media=data,
            media_name=name,
        )

    def submit_signal(
        self,
        *,
        category: str,
        surface: str = "unknown",
        content_ref: str | None = None,
        account: str | None = None,
        child_at_risk_now: bool = False,
        details: dict[str, Any] | None = None,
        actor: str = "system:signal",
    ) -> CaseView:
        """A case item from an automated signal (e.g. a grooming-tactics classifier on text):
        ids and scores only (``details``), never message text."""
        if category not in REASONS:
            raise ReviewError(f"category {category!r} is not one of {', '.join(REASONS)}")
        ref = check_ref(content_ref, "content_ref", required=False)
        acc = check_ref(account, "account", required=False)
        if ref is None and acc is None:
            raise ReviewError("a signal needs a content_ref or an account")
        item = _NewItem(
            source="signal",
            kind="message" if ref else "account",
            category=category,
            surface=surface,
            priority=item_priority(category, child_at_risk_now),
            content_ref=ref,
            match=dict(details or {}) or None,
        )
        now = utcnow()
        with self.db.session() as s:
            self._lock_intake(s)
            case, rows, merged = self._place(
                s,
                [item],
                account=acc,
                child_at_risk_now=child_at_risk_now,
                detected_at=now,
                actor=actor,
                report_id=None,
                now=now,
            )
            case_id = int(case.id)
            self._audit(
                s,
                actor,
                "review.signal",
                case_id,
                {"category": category, "item": int(rows[0].id), "merged": merged},
            )
        return self.get_case(case_id)

    def ingest_match_events(self, *, limit: int = 1000) -> int:
        """Turn match events not yet seen into case items (merging as for reports). Idempotent:
        each event is taken once (``review_ingested``). Suppressed matches and the events review
        itself records when a case is confirmed make no case. Returns the items created."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100_000:
            raise ReviewError(f"limit: expected 1..100000, got {limit!r}")
        created = 0
        now = utcnow()
        with self.db.session() as s:
            self._lock_intake(s)
            seen = select(ReviewIngested.event_id).where(ReviewIngested.event_id == MatchEvent.id)
            events = list(
                s.execute(
                    select(MatchEvent).where(~seen.exists()).order_by(MatchEvent.id).limit(limit)
                ).scalars()
            )
            for e in events:
                if e.type != "match" or (e.query_variant or "").startswith("review:"):
                    s.add(ReviewIngested(event_id=e.id, case_id=None, created_at=now))
                    continue
                item = self._match_item(e)
                case, _rows, _ = self._place(
                    s,
                    [item],
                    account=None,
                    child_at_risk_now=False,
                    detected_at=aware(e.created_at),
                    actor=_SYSTEM,
                    report_id=None,
                    now=now,
                )
                s.add(ReviewIngested(event_id=e.id, case_id=case.id, created_at=now))
                created += 1
            if created:
                audit.record(
                    s,
                    actor=_SYSTEM,
                    action="review.ingest",
                    subject_type="match_event",
                    subject_id=f"{events[0].id}-{events[-1].id}",
                    details={"events": len(events), "items": created},
                )
        return created

    @staticmethod
    def _match_item(e: MatchEvent) -> _NewItem:
        hashes: dict[str, str | None] = {
            "md5": e.query_md5,
            "sha256": e.query_sha256,
            "pdq": e.query_pdq,
        }
        if not any(hashes.values()) and e.signal_type in hashes:
            # Signals-only query: the matched query hash, else the listed one when equal.
            exact = e.variant == "exact" or e.distance == 0
            hashes[e.signal_type] = e.query_hash or (e.listed_value if exact else None)
        cats = [c.lower() for c in (e.categories or [])]
        category = next((c for c in cats if c in REASONS), "csam")
        return _NewItem(
            source="match",
            kind="hash",
            category=category,
            surface="unknown",
            priority=item_priority(category, False),
            content_ref=e.content_id,
            match_event_id=int(e.id),
            match={
                "event_id": int(e.id),
                "query_id": e.query_id,
                "bank": e.bank_name,
                "bank_id": e.bank_id,
                "entry_id": int(e.entry_id),
                "external_id": e.external_id,
                "signal_type": e.signal_type,
                "listed_value": e.listed_value,
                "distance": e.distance,
                "variant": e.variant,
                "query_variant": e.query_variant,
                "listed_variant": e.listed_variant,
                "categories": list(e.categories or []),
            },
            md5=hashes["md5"],
            sha256=hashes["sha256"],
            pdq=hashes["pdq"],
        )

    # -- queue and cases -------------------------------------------------------------------

    def queue(
        self, actor: Actor, *, status: str = "open", limit: int = 50, offset: int = 0
    ) -> list[CaseSummary]:
        """Cases by priority, then age. ``status``: ``open`` (everything awaiting a reviewer:
        open, assigned, escalated, appealed), ``all``, or one status. Escalated cases are shown
        to senior reviewers and admins only
        (until decided)."""
        if status not in ("open", "all", *STATUSES):
            raise ReviewError(f"status {status!r}: expected open, all or one of {STATUSES}")
        if not 1 <= limit <= 1000 or not 0 <= offset <= 1_000_000_000:
            raise ReviewError("limit must be 1..1000 and offset 0..1000000000")
        q = select(ReviewCase)
        if status == "open":
            q = q.where(ReviewCase.status.in_((*ACTIVE, "appealed")))
        elif status != "all":
            q = q.where(ReviewCase.status == status)
        if not actor.role.at_least(Role.SENIOR):
            q = q.where(~(ReviewCase.escalated.is_(True) & ReviewCase.status.in_(ACTIVE)))
        q = q.order_by(ReviewCase.priority, ReviewCase.created_at, ReviewCase.id)
        now = utcnow()
        with self.db.read_session() as s:
            cases = list(s.execute(q.limit(limit).offset(offset)).scalars())
            counts = self._item_counts(s, [int(c.id) for c in cases])
            return [_summary(c, counts.get(int(c.id), 0), now) for c in cases]

    @staticmethod
    def _item_counts(s: Session, ids: Iterable[int]) -> dict[int, int]:
        ids = list(ids)
        if not ids:
            return {}
        rows = s.execute(
            select(ReviewCaseItem.case_id, func.count())
            .where(ReviewCaseItem.case_id.in_(ids))
            .group_by(ReviewCaseItem.case_id)
        ).all()
        return {int(a): int(b) for a, b in rows}

    def get_case(self, case_id: int) -> CaseView:
        with self.db.read_session() as s:
            return self._view(s, case_id)

    def _view(self, s: Session, case_id: int) -> CaseView:
        c = s.get(ReviewCase, _check_id(case_id, "case"))
        if c is None:
            raise NotFound(f"case {case_id} not found")
        items = list(
            s.execute(
                select(ReviewCaseItem)
                .where(ReviewCaseItem.case_id == case_id)
                .order_by(ReviewCaseItem.id)
            ).scalars()
        )
        hist = list(
            s.execute(
                select(ReviewCaseEvent)
                .where(ReviewCaseEvent.case_id == case_id)
                .order_by(ReviewCaseEvent.id)
            ).scalars()
        )
        decs = s.execute(
            select(ReviewDecision)
            .where(ReviewDecision.case_id == case_id)
            .order_by(ReviewDecision.id)
        ).scalars()
        apps = s.execute(
            select(ReviewAppeal).where(ReviewAppeal.case_id == case_id).order_by(ReviewAppeal.id)
        ).scalars()
        les = s.execute(
            select(ReviewLeReport)
            .where(ReviewLeReport.case_id == case_id)
            .order_by(ReviewLeReport.id)
        ).scalars()
        reps = s.execute(
            select(ReviewReport).where(ReviewReport.case_id == case_id).order_by(ReviewReport.id)
        ).scalars()
        sm = _summary(c, len(items), utcnow())
        return CaseView(
            **sm.__dict__,
            decided_by=c.decided_by,
            decided_at=_opt(c.decided_at),
            items=[_item_view(i) for i in items],
            history=[
                CaseEventView(int(h.id), aware(h.time), h.actor, h.action, dict(h.details or {}))
                for h in hist
            ],
            decisions=[
                {
                    "id": int(d.id),
                    "time": aware(d.time),
                    "actor": d.actor,
                    "role": d.role,
                    "decision": d.decision,
                    "note": d.note,
                    "effects": dict(d.effects or {}),
                }
                for d in decs
            ],
            appeals=[
                {
                    "id": int(a.id),
                    "created_at": aware(a.created_at),
                    "appellant": a.appellant,
                    "reason": a.reason,
                    "decision": a.decision,
                    "decision_by": a.decision_by,
                    "decided_at": _opt(a.decided_at),
                    "decided_by": a.decided_by,
                    "upheld": a.upheld,
                    "note": a.note,
                }
                for a in apps
            ],
            le_reports=[
                {
                    "id": int(r.id),
                    "kind": r.kind,
                    "status": r.status,
                    "reference": r.reference,
                    "priority": r.priority,
                    "actor": r.actor,
                    "created_at": aware(r.created_at),
                    "error": r.error,
                }
                for r in les
            ],
            reports=[
                {
                    "id": int(r.id),
                    "created_at": aware(r.created_at),
                    "reporter": r.reporter,
                    "reported_account": r.reported_account,
                    "surface": r.surface,
                    "reason": r.reason,
                    "child_at_risk_now": bool(r.child_at_risk_now),
                    "description": r.description,
                }
                for r in reps
            ],
        )

    # -- optimistic lock -------------------------------------------------------------------

    def _load(self, s: Session, case_id: int) -> ReviewCase:
        c = s.get(ReviewCase, _check_id(case_id, "case"))
        if c is None:
            raise NotFound(f"case {case_id} not found")
        return c

    @staticmethod
    def _check_version(c: ReviewCase, expected: int) -> None:
        if c.version != expected:
            raise Conflict(
                f"case {c.id} was changed by someone else (version {c.version}, you had "
                f"{expected}); reload it"
            )

    @staticmethod
    def _cas(s: Session, case_id: int, expected: int, now: dt.datetime, **values: Any) -> None:
        """``UPDATE review_case SET ..., version = version + 1 WHERE id = :id AND version =
        :expected``; no row updated means another transaction changed the case first."""
        res = s.execute(
            update(ReviewCase)
            .where(ReviewCase.id == case_id, ReviewCase.version == expected)
            .values(version=expected + 1, updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"case {case_id} was changed by someone else meanwhile; reload it")

    # -- assignment and decisions ----------------------------------------------------------

    def assign(self, case_id: int, actor: Actor, *, expected_version: int) -> CaseView:
        """Take a case (or take it over). Starts the first review if it had not started."""
        now = utcnow()
        with self.db.session() as s:
            c = self._load(s, case_id)
            self._check_version(c, expected_version)
            if c.status not in (*ACTIVE, "appealed"):
                raise Conflict(f"case {case_id} is {c.status}; nothing to assign")
            if c.escalated and c.status in ACTIVE:
                actor.require(Role.SENIOR, f"taking escalated case {case_id}")
            previous = c.assigned_to
            self._cas(
                s,
                case_id,
                expected_version,
                now,
                assigned_to=actor.id,
                assigned_at=now,
                status="assigned" if c.status in ("open", "assigned") else c.status,
                first_reviewed_at=c.first_reviewed_at or now,
            )
            self._event(s, case_id, actor.id, "assigned", {"previous": previous}, now)
            self._audit(s, actor.audit_name, "review.assign", case_id, {"previous": previous or ""})
            s.flush()
            s.expire_all()
            return self._view(s, case_id)

    def decide(
        self,
        case_id: int,
        actor: Actor,
        decision: str,
        *,
        expected_version: int,
        note: str = "",
    ) -> CaseView:
        """Decide a case. ``confirm``: its hashes go into the confirmed block bank and that bank's
        action rules fire (webhooks enqueued). ``false_positive``: its hashes go into the
        allow-list bank, attached media is deleted. ``no_violation``: attached media is deleted.
        ``escalate``: the case goes to senior reviewers. A stale ``expected_version`` is a
        Conflict (409); only a senior reviewer may decide an escalated case."""
        if decision not in DECISIONS:
            raise ReviewError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
        check_text(note, "note")
        now = utcnow()
        with self.db.session() as s:
            c = self._load(s, case_id)
            self._check_version(c, expected_version)
            if c.status not in ACTIVE:
                raise Conflict(f"case {case_id} is {c.status}, not awaiting a decision")
            if c.escalated:
                actor.require(Role.SENIOR, f"deciding escalated case {case_id}")
            values: dict[str, Any] = {
                "first_reviewed_at": c.first_reviewed_at or now,
                "assigned_to": c.assigned_to or actor.id,
                "assigned_at": c.assigned_at or now,
            }
            if decision == "escalate":
                values.update(status="escalated", escalated=True)
            else:
                values.update(
                    status="decided",
                    decision=decision,
                    decided_by=actor.id,
                    decided_by_role=actor.role.value,
                    decided_at=now,
                )
            self._cas(s, case_id, expected_version, now, **values)
            row = ReviewDecision(
                case_id=case_id,
                time=now,
                actor=actor.id,
                role=actor.role.value,
                decision=decision,
                note=note,
                effects={},
            )
            s.add(row)
            s.flush()
            decision_id = int(row.id)
            self._event(s, case_id, actor.id, "decided", {"decision": decision, "note": note}, now)
            self._audit(
                s,
                actor.audit_name,
                "review.decide",
                case_id,
                {"decision": decision, "version": expected_version + 1, "note": note[:500]},
            )
            items = list(
                s.execute(select(ReviewCaseItem).where(ReviewCaseItem.case_id == case_id)).scalars()
            )
        if decision != "escalate":
            effects = self._apply(case_id, decision, items, actor)
            self._record_effects(case_id, decision_id, effects, actor)
        return self.get_case(case_id)

    def _apply(
        self, case_id: int, decision: str, items: Sequence[ReviewCaseItem], actor: Actor
    ) -> dict[str, Any]:
        effects: dict[str, Any] = {}
        if decision in ("confirm", "false_positive"):
            block = decision == "confirm"
            bank = self._ensure_bank(block)
            added: list[int] = []
            events: list[int] = []
            for it in items:
                matches: list[Match] = []
                for st in ("md5", "sha256", "pdq"):
                    v = getattr(it, st)
                    if not v:
                        continue
                    r = self.banks.add_entry(
                        bank.id,
                        st,
                        v,
                        source="lifeguard-review",
                        external_id=f"lifeguard-case-{case_id}",
                        note=f"case {case_id} item {it.id}: {decision} by {actor.id}",
                        categories=[it.category],
                        added_by=actor.audit_name,
                    )
                    if r.created or r.reactivated:
                        added.append(int(r.entry.id))
                    matches.append(
                        Match(
                            bank=bank.name,
                            bank_id=bank.id,
                            bank_kind="block",
                            entry_id=int(r.entry.id),
                            external_id=r.entry.external_id,
                            signal_type=st,
                            value=v,
                            distance=0,
                            variant="plain" if st == "pdq" else "exact",
                            query_variant=f"review:case-{case_id}",
                            listed_variant="plain",
                            categories=tuple(r.entry.categories),
                        )
                    )
                if block and matches:
                    events += record_match(
                        self.db, MatchResult(matches=matches), it.content_ref, None
                    )
            effects["bank"] = bank.name
            effects["entries_added"] = added
            if block:
                effects["events"] = events
        if decision in ("false_positive", "no_violation"):
            effects["evidence_deleted"] = self._delete_media(
                case_id, items, actor, f"case decided {decision}"
            )
        return effects

    def _ensure_bank(self, block: bool) -> Any:
        name = self.settings.review_confirmed_bank if block else self.settings.review_allow_bank
        try:
            return self.banks.get_bank(name)
        except NotFound:
            try:
                return self.banks.create_bank(
                    name,
                    kind="block" if block else "allow",
                    description=(
                        "Hashes of content confirmed in review (lifeguard review)."
                        if block
                        else "Hashes found to be false positives in review (allow list)."
                    ),
                    supplier="lifeguard-review",
                )
            except Conflict:  # created concurrently
                return self.banks.get_bank(name)

    def _delete_media(
        self, case_id: int, items: Sequence[ReviewCaseItem], actor: Actor, reason: str
    ) -> list[str]:
        """Delete the case's media from the vault (row and blob; audited like retention purges),
        unless it is on legal hold."""
        ids = [i.evidence_id for i in items if i.evidence_id and not i.media_deleted]
        deleted: list[str] = []
        if not ids:
            return deleted
        with self.db.session() as s:
            rows = list(
                s.execute(
                    select(EvidenceItem).where(EvidenceItem.id.in_(ids)).with_for_update()
                ).scalars()
            )
            for r in rows:
                if r.legal_hold:
                    continue
                audit.record(
                    s,
                    actor=actor.audit_name,
                    action="evidence.delete",
                    subject_type="evidence",
                    subject_id=r.id,
                    details={
                        "case_id": r.case_id,
                        "sha256": r.sha256,
                        "md5": r.md5,
                        "size": int(r.size),
                        "reason": reason,
                    },
                )
                s.delete(r)
                deleted.append(r.id)
            gone = set(deleted) | (set(ids) - {r.id for r in rows})
            if gone:
                s.execute(
                    update(ReviewCaseItem)
                    .where(ReviewCaseItem.evidence_id.in_(gone))
                    .values(media_deleted=True)
                )
        for i in deleted:
            Path(self.vault.path_for(i)).unlink(missing_ok=True)
        return deleted

    def _record_effects(
        self, case_id: int, decision_id: int | None, effects: dict[str, Any], actor: Actor
    ) -> None:
        now = utcnow()
        with self.db.session() as s:
            if decision_id is not None:
                s.execute(
                    update(ReviewDecision)
                    .where(ReviewDecision.id == decision_id)
                    .values(effects=effects)
                )
            self._event(s, case_id, actor.id, "effects", effects, now)
            self._audit(s, actor.audit_name, "review.effects", case_id, effects)

    # -- appeals ---------------------------------------------------------------------------

    def appeal(self, case_id: int, *, appellant: str, reason: str) -> CaseView:
        """Appeal a case's decision (by the reported user, or by the reporter against a
        no_violation / false_positive decision)."""
        who = check_ref(appellant, "appellant")
        assert who is not None
        check_text(reason, "reason")
        now = utcnow()
        with self.db.session() as s:
            c = self._load(s, case_id)
            if c.status != "decided" or c.decision is None or c.decided_by is None:
                raise Conflict(f"case {case_id} is {c.status}; only a decided case can be appealed")
            self._cas(s, case_id, c.version, now, status="appealed")
            s.add(
                ReviewAppeal(
                    case_id=case_id,
                    created_at=now,
                    appellant=who,
                    reason=reason,
                    decision=c.decision,
                    decision_by=c.decided_by,
                    note="",
                )
            )
            self._event(s, case_id, who, "appealed", {"decision": c.decision}, now)
            self._audit(
                s,
                f"appellant:{who}",
                "review.appeal",
                case_id,
                {"decision": c.decision, "reason": reason[:500]},
            )
        return self.get_case(case_id)

    def decide_appeal(
        self,
        case_id: int,
        actor: Actor,
        *,
        upheld: bool,
        expected_version: int,
        note: str = "",
    ) -> CaseView:
        """Decide an appeal. The reviewer who made the decision under appeal may not (Forbidden).
        Upheld against ``confirm``: the case's entries leave the confirmed bank, attached media
        is deleted and the outcome becomes ``no_violation``. Upheld against ``false_positive`` /
        ``no_violation``: the allow-list entries are removed and the case reopens, escalated to
        senior review. Not upheld: the decision stands and the case closes."""
        if not isinstance(upheld, bool):
            raise ReviewError("upheld must be true or false")
        check_text(note, "note")
        now = utcnow()
        with self.db.session() as s:
            c = self._load(s, case_id)
            self._check_version(c, expected_version)
            if c.status != "appealed":
                raise Conflict(f"case {case_id} is {c.status}; no appeal to decide")
            ap = (
                s.execute(
                    select(ReviewAppeal)
                    .where(ReviewAppeal.case_id == case_id, ReviewAppeal.decided_at.is_(None))
                    .order_by(ReviewAppeal.id.desc())
                )
                .scalars()
                .first()
            )
            if ap is None:  # pragma: no cover - status and rows agree
                raise Conflict(f"case {case_id}: no open appeal")
            if ap.decision_by == actor.id:
                raise Forbidden(
                    f"{actor.id} made the decision under appeal on case {case_id}; a different "
                    "reviewer must decide the appeal"
                )
            original = ap.decision
            values: dict[str, Any]
            if not upheld:
                values = {"status": "closed", "closed_at": now}
            elif original == "confirm":
                values = {"status": "closed", "closed_at": now, "decision": "no_violation"}
            else:
                values = {
                    "status": "open",
                    "decision": None,
                    "decided_by": None,
                    "decided_by_role": None,
                    "decided_at": None,
                    "escalated": True,
                    "assigned_to": None,
                    "assigned_at": None,
                }
            self._cas(s, case_id, expected_version, now, **values)
            ap.decided_at = now
            ap.decided_by = actor.id
            ap.upheld = upheld
            ap.note = note
            self._event(
                s,
                case_id,
                actor.id,
                "appeal_decided",
                {"upheld": upheld, "decision": original, "note": note},
                now,
            )
            self._audit(
                s,
                actor.audit_name,
                "review.appeal_decide",
                case_id,
                {"upheld": upheld, "decision": original, "note": note[:500]},
            )
            items = list(
                s.execute(select(ReviewCaseItem).where(ReviewCaseItem.case_id == case_id)).scalars()
            )
            entry_ids = [
                int(x)
                for d in s.execute(
                    select(ReviewDecision).where(
                        ReviewDecision.case_id == case_id, ReviewDecision.decision == original
                    )
                ).scalars()
                for x in (d.effects or {}).get("entries_added", [])
            ]
        if upheld:
            effects: dict[str, Any] = {"appeal": True, "entries_removed": []}
            for eid in entry_ids:
                try:
                    self.banks.remove_entry(
                        eid, by=actor.audit_name, reason=f"appeal upheld on case {case_id}"
                    )
                    effects["entries_removed"].append(eid)
                except (NotFound, Conflict, LifeguardError):
                    continue  # already removed/changed by a bank curator
            if original == "confirm":
                effects["evidence_deleted"] = self._delete_media(
                    case_id, items, actor, "appeal upheld"
                )
            self._record_effects(case_id, None, effects, actor)
        return self.get_case(case_id)

    # -- media and law-enforcement reports -------------------------------------------------

    def item_media(self, item_id: int, *, actor: Actor | None = None) -> tuple[bytes, str]:
        """The media attached to a case item, decrypted (the access is audited). NotFound when
        the item has none (or it was deleted after a no_violation/false_positive decision)."""
        with self.db.read_session() as s:
            it = s.get(ReviewCaseItem, _check_id(item_id, "case item"))
            if it is None:
                raise NotFound(f"case item {item_id} not found")
            if it.evidence_id is None or it.media_deleted:
                raise NotFound(f"case item {item_id} has no media")
            ev_id, mime, case_id = it.evidence_id, it.mime, int(it.case_id)
        ev = self.vault.get(
            ev_id,
            actor=actor.audit_name if actor else _SYSTEM,
            reason=f"review of case {case_id}",
        )
        return ev.content, mime or ev.info.media_type

    def le_report(
        self,
        case_id: int,
        actor: Actor,
        kind: str,
        *,
        classification: str | None = None,
    ) -> LeReportView:
        """Build (and, when an endpoint is configured, submit) an NCMEC or NCA report from a
        confirmed case. Senior reviewers and admins only; see :mod:`lifeguard.review.le`."""
        from lifeguard.review.le import make_le_report

        actor.require(Role.SENIOR, "a law-enforcement report")
        return make_le_report(self, case_id, actor, kind, classification=classification)
