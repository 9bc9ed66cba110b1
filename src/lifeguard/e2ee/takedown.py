"""Take it down: a young person lists their own image by its hashes, computed on their device.

The device sends only PDQ (+ its quality) and MD5 per image, optionally an age band. The hashes go
into a normal block bank (``SELF_REPORTED`` by default), so every matcher blocks re-uploads; a random
receipt code, shown once and stored as SHA-256, lets the submitter check or withdraw the submission
later (withdrawing disables the entries no other live submission shares).

Abuse checks: rate limits per client key and per IP (token buckets in process); each submitted hash is
matched against the banks first, and a submission whose hashes hit an allow-list, are low-quality, or
match many *unrelated* listed entries (different hash values: a degenerate or hostile hash, e.g. of a
popular benign image) is held for review instead of listed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lifeguard.api.ratelimit import RateLimiter
from lifeguard.errors import Conflict, LifeguardError, NotFound

if TYPE_CHECKING:  # the device side (lifeguard.e2ee.client) never loads the database layer
    from lifeguard.banks import Banks
    from lifeguard.matching import MatchResult
    from lifeguard.store.db import Database

AGE_BANDS: tuple[str, ...] = ("under_13", "13_15", "16_17", "adult_now")
RECEIPT_PREFIX = "TD-"
_RECEIPT_RE = re.compile(r"^TD-[A-Z2-7]{4}(-[A-Z2-7]{4}){7}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
SOURCE = "take-it-down"


class TakedownSettings(BaseSettings):
    """Environment variables ``LIFEGUARD_TAKEDOWN_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="LIFEGUARD_TAKEDOWN_", extra="ignore")

    bank: str = Field(default="SELF_REPORTED", description="Bank that receives the hashes.")
    max_images: int = Field(default=10, ge=1, le=100, description="Images per submission.")
    per_ip_per_hour: float = Field(default=10, ge=0, description="Submissions per IP (0: off).")
    per_key_per_hour: float = Field(
        default=1000, ge=0, description="Submissions per client API key (0: off)."
    )
    review_unrelated_matches: int = Field(
        default=3,
        ge=1,
        description="Hold for review when hashes match this many unrelated entries.",
    )
    min_pdq_quality: int = Field(default=50, ge=0, le=100)


class TakedownError(LifeguardError):
    code = "takedown_error"


class RateLimited(TakedownError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ImageHashes:
    """The only thing that leaves the device for one image."""

    pdq: str
    md5: str
    pdq_quality: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"pdq": self.pdq, "md5": self.md5, "pdq_quality": self.pdq_quality}


@dataclass(frozen=True)
class SubmissionView:
    id: int
    status: str  # active | review | rejected | withdrawn
    images: int
    age_band: str
    created_at: dt.datetime
    status_changed_at: dt.datetime | None
    review_reason: str = ""
    unrelated_matches: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "images": self.images,
            "age_band": self.age_band or None,
            "created_at": self.created_at.isoformat(),
            "status_changed_at": self.status_changed_at.isoformat()
            if self.status_changed_at
            else None,
            "review_reason": self.review_reason,
            "unrelated_matches": self.unrelated_matches,
        }


@dataclass(frozen=True)
class Receipt:
    """The answer to a submission. ``code`` is shown once; only its SHA-256 is stored."""

    code: str
    submission: SubmissionView


def new_receipt_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(20)).decode("ascii")  # 160 bits, 32 characters
    return RECEIPT_PREFIX + "-".join(raw[i : i + 4] for i in range(0, 32, 4))


def receipt_digest(code: str) -> str:
    c = code.strip().upper()
    if not _RECEIPT_RE.match(c):
        raise TakedownError("receipt code is malformed", code="invalid_receipt")
    return hashlib.sha256(c.encode("ascii")).hexdigest()


def check_hashes(images: Sequence[ImageHashes], max_images: int) -> list[ImageHashes]:
    if not images:
        raise TakedownError("at least one image's hashes are needed", code="invalid_field")
    if len(images) > max_images:
        raise TakedownError(
            f"{len(images)} images, at most {max_images} per submission", code="invalid_field"
        )
    out: list[ImageHashes] = []
    for i, h in enumerate(images):
        pdq, md5 = h.pdq.strip().lower(), h.md5.strip().lower()
        if not _HEX64.match(pdq):
            raise TakedownError(f"images[{i}].pdq: 64 hex characters", code="invalid_field")
        if not _HEX32.match(md5):
            raise TakedownError(f"images[{i}].md5: 32 hex characters", code="invalid_field")
        q = h.pdq_quality
        if q is not None and not 0 <= q <= 100:
            raise TakedownError(f"images[{i}].pdq_quality: 0..100", code="invalid_field")
        out.append(ImageHashes(pdq, md5, q))
    return out


def _view(r: Any) -> SubmissionView:
    return SubmissionView(
        id=int(r.id),
        status=r.status,
        images=len(r.hashes or []),
        age_band=r.age_band,
        created_at=r.created_at,
        status_changed_at=r.status_changed_at,
        review_reason=r.review_reason,
        unrelated_matches=r.unrelated_matches,
    )


Matcher = Callable[[list[tuple[str, str]]], "MatchResult"]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Takedown:
    """Self-reported hash submissions over :class:`Banks`. ``match`` is the abuse check's lookup
    (e.g. ``lambda sigs: matcher.match_signals(sigs)``)."""

    def __init__(
        self,
        db: Database,
        banks: Banks,
        match: Matcher,
        settings: TakedownSettings | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.db = db
        self.banks = banks
        self.match = match
        self.settings = settings or TakedownSettings()
        self.limiter = limiter or RateLimiter()

    # -- helpers ------------------------------------------------------------------------------

    def ensure_bank(self) -> str:
        name = self.settings.bank
        try:
            return self.banks.get_bank(name).name
        except NotFound:
            try:
                b = self.banks.create_bank(
                    name,
                    description="Take it down: hashes young people submitted of their own images.",
                    kind="block",
                    categories=["self_reported"],
                )
                return b.name
            except Conflict:
                return self.banks.get_bank(name).name

    def _rate(self, bucket: str, per_hour: float, what: str) -> None:
        if per_hour <= 0:
            return
        wait = self.limiter.take(bucket, per_hour / 3600.0, per_hour)
        if wait > 0:
            raise RateLimited(
                f"too many take-it-down submissions from this {what}; retry in {wait:.0f}s", wait
            )

    def abuse_check(self, images: Sequence[ImageHashes]) -> tuple[int, str]:
        """``(unrelated matches, reason)``; a non-empty reason holds the submission for review."""
        unrelated: set[int] = set()
        reasons: list[str] = []
        for i, h in enumerate(images):
            if h.pdq_quality is not None and h.pdq_quality < self.settings.min_pdq_quality:
                reasons.append(f"image {i}: PDQ quality {h.pdq_quality} is too low to match safely")
            r = self.match([("pdq", h.pdq), ("md5", h.md5)])
            if r.allowed:
                reasons.append(f"image {i}: matches an allow-list entry")
            for m in [*r.matches, *r.suppressed, *r.allowed]:
                same = m.value == (h.pdq if m.signal_type == "pdq" else h.md5)
                if not same:
                    unrelated.add(m.entry_id)
        if len(unrelated) >= self.settings.review_unrelated_matches:
            reasons.append(f"hashes match {len(unrelated)} unrelated listed entries")
        return len(unrelated), "; ".join(reasons)

    def _list(self, images: Sequence[ImageHashes], age_band: str, by: str) -> list[int]:
        bank = self.ensure_bank()
        cats = ["self_reported"] + ([f"age_{age_band}"] if age_band else [])
        ids: list[int] = []
        for h in images:
            for st, v, q in (("pdq", h.pdq, h.pdq_quality), ("md5", h.md5, None)):
                r = self.banks.add_entry(
                    bank, st, v, quality=q, source=SOURCE, categories=cats, added_by=by
                )
                if r.entry.status == "disabled":
                    self.banks.enable_entry(r.entry.id, by=by, reason="submitted again")
                ids.append(r.entry.id)
        return ids

    # -- operations ---------------------------------------------------------------------------

    def submit(
        self,
        images: Sequence[ImageHashes],
        *,
        age_band: str = "",
        client_key_id: str = "",
        client_ip: str = "",
    ) -> Receipt:
        s = self.settings
        imgs = check_hashes(images, s.max_images)
        if age_band and age_band not in AGE_BANDS:
            raise TakedownError(
                f"age_band: one of {', '.join(AGE_BANDS)} (or leave it out)", code="invalid_field"
            )
        if client_ip:
            self._rate(f"takedown-ip:{client_ip}", s.per_ip_per_hour, "address")
        if client_key_id:
            self._rate(f"takedown-key:{client_key_id}", s.per_key_per_hour, "client")
        unrelated, reason = self.abuse_check(imgs)
        status = "review" if reason else "active"
        by = f"takedown:{client_key_id}" if client_key_id else "takedown"
        entry_ids = self._list(imgs, age_band, by) if status == "active" else []
        code = new_receipt_code()
        from lifeguard.e2ee.models import TakedownSubmission
        from lifeguard.reports import audit

        with self.db.session() as sess:
            row = TakedownSubmission(
                receipt_sha256=receipt_digest(code),
                bank=s.bank,
                hashes=[h.to_json() for h in imgs],
                entry_ids=entry_ids,
                age_band=age_band,
                status=status,
                review_reason=reason,
                unrelated_matches=unrelated,
                client_key_id=client_key_id[:32],
                created_at=_utcnow(),
            )
            sess.add(row)
            sess.flush()
            audit.record(
                sess,
                actor=by,
                action="takedown.submit",
                subject_type="takedown_submission",
                subject_id=str(row.id),
                details={"status": status, "images": len(imgs), "entries": len(entry_ids)},
            )
            view = _view(row)
        return Receipt(code, view)

    def _by_receipt(self, code: str) -> Any:
        from sqlalchemy import select

        from lifeguard.e2ee.models import TakedownSubmission

        digest = receipt_digest(code)
        with self.db.read_session() as s:
            row = s.execute(
                select(TakedownSubmission).where(TakedownSubmission.receipt_sha256 == digest)
            ).scalar_one_or_none()
        if row is None or not hmac.compare_digest(row.receipt_sha256, digest):
            raise NotFound("no submission has this receipt code", code="unknown_receipt")
        return row

    def status(self, code: str) -> SubmissionView:
        return _view(self._by_receipt(code))

    def _shared_entries(self, sess: Any, exclude_id: int) -> set[int]:
        from sqlalchemy import select

        from lifeguard.e2ee.models import TakedownSubmission

        live = sess.execute(
            select(TakedownSubmission.entry_ids).where(
                TakedownSubmission.status == "active", TakedownSubmission.id != exclude_id
            )
        ).scalars()
        return {int(e) for ids in live for e in (ids or [])}

    def withdraw(self, code: str) -> SubmissionView:
        """Withdraw by receipt: the submission's entries are disabled (unless another live
        submission lists the same hash). Idempotent."""
        from lifeguard.e2ee.models import TakedownSubmission
        from lifeguard.reports import audit

        row = self._by_receipt(code)
        if row.status == "withdrawn":
            return _view(row)
        with self.db.session() as sess:
            r = sess.get(TakedownSubmission, row.id)
            assert r is not None
            keep = self._shared_entries(sess, r.id)
            to_disable = [e for e in (r.entry_ids or []) if e not in keep]
            r.status = "withdrawn"
            r.status_changed_at = _utcnow()
            audit.record(
                sess,
                actor="takedown",
                action="takedown.withdraw",
                subject_type="takedown_submission",
                subject_id=str(r.id),
                details={"entries_disabled": len(to_disable)},
            )
            view = _view(r)
        for e in to_disable:
            info = self.banks.get_entry(e)
            if info.status == "active":
                self.banks.disable_entry(e, by="takedown", reason="withdrawn by the submitter")
        return view

    # -- review -------------------------------------------------------------------------------

    def list_submissions(self, *, status: str = "review", limit: int = 100) -> list[SubmissionView]:
        from sqlalchemy import select

        from lifeguard.e2ee.models import TakedownSubmission

        with self.db.read_session() as s:
            rows = s.execute(
                select(TakedownSubmission)
                .where(TakedownSubmission.status == status)
                .order_by(TakedownSubmission.id)
                .limit(limit)
            ).scalars()
            return [_view(r) for r in rows]

    def decide(self, submission_id: int, *, approve: bool, by: str = "") -> SubmissionView:
        """List (approve) or reject a submission held for review."""
        from lifeguard.e2ee.models import TakedownSubmission
        from lifeguard.reports import audit

        with self.db.read_session() as s:
            row = s.get(TakedownSubmission, submission_id)
            if row is None:
                raise NotFound(f"take-it-down submission {submission_id} not found")
            if row.status != "review":
                raise Conflict(f"submission {submission_id} is {row.status}, not under review")
            imgs = [ImageHashes(h["pdq"], h["md5"], h.get("pdq_quality")) for h in row.hashes]
            age = row.age_band
        ids = self._list(imgs, age, by or "reviewer") if approve else []
        with self.db.session() as sess:
            r = sess.get(TakedownSubmission, submission_id)
            assert r is not None
            r.status = "active" if approve else "rejected"
            r.entry_ids = ids
            r.status_changed_at = _utcnow()
            audit.record(
                sess,
                actor=by or "reviewer",
                action="takedown.approve" if approve else "takedown.reject",
                subject_type="takedown_submission",
                subject_id=str(r.id),
                details={"entries": len(ids)},
            )
            return _view(r)
