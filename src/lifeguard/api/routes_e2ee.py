"""``/v1/e2ee``: message franking (stamp, verified reports) and ``/v1/takedown`` (take it down).

Scopes: ``frank`` for the platform's message relay and report backend (stamping is what lets a
report be believed, so a stamping key must not sit on a device); ``takedown`` for the client app
that submits self-reported hashes (it grants nothing else); review of held submissions needs
``bank:read`` / ``bank:write``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from lifeguard.api.problems import Problem
from lifeguard.api.routing import GuardedRoute, scoped
from lifeguard.api.state import AppState, get_state
from lifeguard.e2ee.franking import (
    AlreadyReported,
    AttachmentRef,
    FrankingError,
    FrankingKeyError,
    FrankingReport,
    FrankingService,
    ReportedAttachment,
    ReportRejected,
    Stamp,
    VerifiedReport,
    b64d,
)
from lifeguard.e2ee.takedown import ImageHashes, RateLimited, Takedown, TakedownError

log = logging.getLogger("lifeguard.api")

e2ee = APIRouter(prefix="/v1", route_class=GuardedRoute)
_lock = threading.Lock()


# ------------------------------------------------------------------------------------ schemas
class StampIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    commitment: str = Field(description="Base64 of the sender's 32-byte HMAC commitment.")
    sender: str = Field(min_length=1, max_length=256)
    recipient: str = Field(min_length=1, max_length=256)
    conversation: str = Field(default="", max_length=256)


class StampOut(BaseModel):
    tag: str = Field(description="Base64 HMAC-SHA256 server tag.")
    key_id: str
    timestamp_ms: int
    sender: str
    recipient: str
    conversation: str


class StampedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tag: str
    key_id: str = Field(max_length=32)
    timestamp_ms: int = Field(ge=0, le=253_402_300_799_999)
    sender: str = Field(max_length=256)
    recipient: str = Field(max_length=256)
    conversation: str = Field(default="", max_length=256)


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ciphertext: str = Field(description="Base64 of the attachment's AES-256-GCM ciphertext.")
    ciphertext_sha256: str = Field(pattern="^[0-9a-fA-F]{64}$")
    key: str = Field(description="Base64 of the 32-byte attachment key.")
    nonce: str = Field(description="Base64 of the 12-byte nonce.")
    mime: str = Field(default="application/octet-stream", max_length=128)


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=8000)
    franking_key: str
    commitment: str
    stamp: StampedIn
    reporter: str = Field(
        min_length=1, max_length=256, description="The reporting user, as the platform knows them."
    )
    category: Literal["csam", "grooming", "sextortion", "take_it_down", "other_child_safety"] = (
        Field(default="other_child_safety", description="The review room's report reason.")
    )
    child_at_risk_now: bool = False
    note: str = Field(default="", max_length=1000, description="The reporter's own words.")
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=16)


class ReportAttachmentOut(BaseModel):
    sha256: str
    mime: str
    size: int


class ReportOut(BaseModel):
    report_id: int
    verified: bool
    case_id: int | None
    queued: bool
    sender: str
    recipient: str
    conversation: str
    sent_at: dt.datetime
    attachments: list[ReportAttachmentOut]


class ImageHashesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pdq: str = Field(pattern="^[0-9a-fA-F]{64}$")
    md5: str = Field(pattern="^[0-9a-fA-F]{32}$")
    pdq_quality: int | None = Field(default=None, ge=0, le=100)


class SubmissionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[ImageHashesIn] = Field(min_length=1, max_length=100)
    age_band: str | None = Field(default=None, max_length=16)


class SubmissionOut(BaseModel):
    id: int
    status: str
    images: int
    age_band: str | None
    created_at: str
    status_changed_at: str | None
    review_reason: str
    unrelated_matches: int


class ReceiptOut(BaseModel):
    receipt: str = Field(description="Shown once; needed to check or withdraw the submission.")
    submission: SubmissionOut


class ReceiptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    receipt: str = Field(max_length=64)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approve: bool


# ------------------------------------------------------------------------------------ services
def _franking(st: AppState, request: Request) -> FrankingService:
    svc: FrankingService | None = getattr(request.app.state, "e2ee_franking", None)
    if svc is None:
        with _lock:
            svc = getattr(request.app.state, "e2ee_franking", None)
            if svc is None:
                svc = FrankingService(st.db)
                request.app.state.e2ee_franking = svc
    try:
        _ = svc.keys
    except FrankingKeyError as e:
        raise _franking_problem(e) from None
    return svc


def _takedown(st: AppState, request: Request) -> Takedown:
    svc: Takedown | None = getattr(request.app.state, "e2ee_takedown", None)
    if svc is None:
        with _lock:
            svc = getattr(request.app.state, "e2ee_takedown", None)
            if svc is None:
                svc = Takedown(st.db, st.banks, lambda sigs: st.fresh().match_signals(sigs))
                request.app.state.e2ee_takedown = svc
    return svc


def _key_id(request: Request) -> str:
    key = getattr(request.state, "key", None)
    return str(key.id) if key is not None else ""


def _franking_problem(e: FrankingError) -> Problem:
    if isinstance(e, FrankingKeyError):
        # Not enabled (no key configured): the API's own refusal, like URL fetching when off.
        # Configured but unusable (malformed key file): the server is misconfigured.
        if e.code == "franking_disabled":
            return Problem(403, e.code, e.message)
        return Problem(503, "franking_not_configured", e.message)
    title = "Report did not verify" if isinstance(e, ReportRejected) else "Invalid value"
    return Problem(422, e.code, e.message, title=title)


# ------------------------------------------------------------------------------------ franking
@e2ee.post(
    "/e2ee/stamp",
    tags=["e2ee"],
    summary="Tag a sender's franking commitment with sender, recipient and time (no content)",
    response_model=StampOut,
)
@scoped("frank")
def stamp(request: Request, body: StampIn) -> dict[str, Any]:
    st = get_state(request)
    svc = _franking(st, request)
    try:
        c = b64d(body.commitment, "commitment", size=32)
        s = svc.stamp(
            c, sender=body.sender, recipient=body.recipient, conversation=body.conversation
        )
    except FrankingError as e:
        raise _franking_problem(e) from None
    return s.to_json()


def _enqueue_verified_report(
    st: AppState, v: VerifiedReport, *, category: str, child_at_risk_now: bool
) -> int | None:
    """File a verified report as a case: an "E2EE verified report" (surface ``e2ee_verified``)
    through ``lifeguard.review.service.ReviewService.submit_report``. The reported account is the
    sender, the reporter the recipient; the verified text becomes the case's message item (its
    description, with the franking metadata) and each attachment its media (kept in the encrypted
    evidence vault). Returns the case id, or None when the review room is not installed."""
    try:
        from lifeguard.review.intake import ContentRef, UserReportIn
        from lifeguard.review.service import ReviewService
    except ImportError:
        return None
    head = (
        f"E2EE verified report {v.report_id}: message from {v.sender} to {v.recipient}"
        f"{' in ' + v.conversation if v.conversation else ''}, sent {v.sent_at.isoformat()} "
        f"(franking key {v.key_id}); {len(v.attachments)} attachment(s).\n"
        + (f"Reporter's note: {v.reason}\n" if v.reason else "")
        + "Message:\n"
    )
    report = UserReportIn(
        reporter=v.recipient,
        reason=category,
        surface="e2ee_verified",
        reported_account=v.sender,
        content=(ContentRef(content_id=f"e2ee-report-{v.report_id}"),),
        child_at_risk_now=child_at_risk_now,
        description=head + v.text,
    )
    media = [(f"attachment-{i}{_ext(a.mime)}", a.data) for i, a in enumerate(v.attachments)]
    case = ReviewService(st.db, st.settings).submit_report(
        report, media=media, received_by="e2ee-franking"
    )
    return int(case.id)


def _ext(mime: str) -> str:
    return {
        "image/jpeg": ".jpg",
        "image/png": ".png",
        "image/gif": ".gif",
        "image/webp": ".webp",
        "video/mp4": ".mp4",
    }.get(mime, "")


@e2ee.post(
    "/e2ee/reports",
    tags=["e2ee"],
    summary="Verify a franked abuse report and file it as an 'E2EE verified report' case",
    status_code=201,
    response_model=ReportOut,
    responses={
        409: {"description": "this stamped message was already reported"},
        422: {"description": "the report did not verify (code says which check failed)"},
    },
)
@scoped("frank")
def report(request: Request, body: ReportIn) -> JSONResponse:
    st = get_state(request)
    svc = _franking(st, request)
    try:
        atts = tuple(
            ReportedAttachment(
                ciphertext=b64d(a.ciphertext, f"attachments[{i}].ciphertext"),
                ref=AttachmentRef(
                    ciphertext_sha256=bytes.fromhex(a.ciphertext_sha256),
                    key=b64d(a.key, f"attachments[{i}].key", size=32),
                    nonce=b64d(a.nonce, f"attachments[{i}].nonce", size=12),
                    mime=a.mime,
                ),
            )
            for i, a in enumerate(body.attachments)
        )
        s = body.stamp
        rep = FrankingReport(
            text=body.text,
            franking_key=b64d(body.franking_key, "franking_key", size=32),
            commitment=b64d(body.commitment, "commitment", size=32),
            stamp=Stamp(
                tag=b64d(s.tag, "stamp.tag", size=32),
                key_id=s.key_id,
                timestamp_ms=s.timestamp_ms,
                sender=s.sender,
                recipient=s.recipient,
                conversation=s.conversation,
            ),
            reporter=body.reporter,
            attachments=atts,
            reason=body.note,
        )
        v = svc.verify_report(rep)
    except AlreadyReported as e:
        raise Problem(409, e.code, e.message, report_id=e.report_id) from None
    except (FrankingError, OverflowError, ValueError) as e:
        if isinstance(e, FrankingError):
            raise _franking_problem(e) from None
        raise Problem(422, "invalid_field", f"stamp: {e}") from None
    case_id: int | None = None
    try:
        case_id = _enqueue_verified_report(
            st, v, category=body.category, child_at_risk_now=body.child_at_risk_now
        )
        svc.set_case(v.report_id, case_id)
    except Exception as e:  # the report is verified and recorded; filing is retried by an operator
        log.error("could not file verified report %d as a case", v.report_id, exc_info=True)
        svc.set_case(v.report_id, None, f"{type(e).__name__}: {e}")
    out = ReportOut(
        report_id=v.report_id,
        verified=True,
        case_id=case_id,
        queued=case_id is not None,
        sender=v.sender,
        recipient=v.recipient,
        conversation=v.conversation,
        sent_at=v.sent_at,
        attachments=[
            ReportAttachmentOut(sha256=a.sha256, mime=a.mime, size=len(a.data))
            for a in v.attachments
        ],
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


# ------------------------------------------------------------------------------------ take it down
def _client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else ""


def _takedown_problem(e: TakedownError) -> Problem:
    if isinstance(e, RateLimited):
        return Problem(
            429,
            "rate_limited",
            e.message,
            headers={"Retry-After": str(max(1, math.ceil(e.retry_after_s)))},
        )
    return Problem(422, e.code, e.message)


@e2ee.post(
    "/takedown/submissions",
    tags=["take it down"],
    summary="Submit hashes of one's own images (computed on the device); returns a receipt code",
    status_code=201,
    response_model=ReceiptOut,
)
@scoped("takedown")
def takedown_submit(request: Request, body: SubmissionIn) -> JSONResponse:
    st = get_state(request)
    st.require_ready()
    svc = _takedown(st, request)
    try:
        r = svc.submit(
            [ImageHashes(i.pdq, i.md5, i.pdq_quality) for i in body.images],
            age_band=body.age_band or "",
            client_key_id=_key_id(request),
            client_ip=_client_ip(request),
        )
    except TakedownError as e:
        raise _takedown_problem(e) from None
    st.index_dirty = True
    return JSONResponse({"receipt": r.code, "submission": r.submission.to_json()}, status_code=201)


@e2ee.post(
    "/takedown/status",
    tags=["take it down"],
    summary="A submission's status, by receipt code",
    response_model=SubmissionOut,
)
@scoped("takedown")
def takedown_status(request: Request, body: ReceiptIn) -> dict[str, Any]:
    st = get_state(request)
    try:
        return _takedown(st, request).status(body.receipt).to_json()
    except TakedownError as e:
        raise _takedown_problem(e) from None


@e2ee.post(
    "/takedown/withdraw",
    tags=["take it down"],
    summary="Withdraw a submission by receipt code (its entries stop matching)",
    response_model=SubmissionOut,
)
@scoped("takedown")
async def takedown_withdraw(request: Request, body: ReceiptIn) -> dict[str, Any]:
    st = get_state(request)
    svc = _takedown(st, request)
    try:
        v = await run_in_threadpool(svc.withdraw, body.receipt)
    except TakedownError as e:
        raise _takedown_problem(e) from None
    st.index_dirty = True
    return v.to_json()


@e2ee.get(
    "/takedown/submissions",
    tags=["take it down"],
    summary="Submissions by status (default: held for review); no receipt codes",
    response_model=list[SubmissionOut],
)
@scoped("bank:read")
def takedown_list(
    request: Request,
    status: Annotated[str, Query(pattern="^(active|review|rejected|withdrawn)$")] = "review",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    st = get_state(request)
    return [
        v.to_json() for v in _takedown(st, request).list_submissions(status=status, limit=limit)
    ]


@e2ee.post(
    "/takedown/submissions/{submission_id}/decision",
    tags=["take it down"],
    summary="List (approve) or reject a submission held for review",
    response_model=SubmissionOut,
)
@scoped("bank:write")
def takedown_decide(
    request: Request, submission_id: Annotated[int, Path(ge=1, le=2**53)], body: DecisionIn
) -> dict[str, Any]:
    st = get_state(request)
    key = _key_id(request)
    return (
        _takedown(st, request)
        .decide(submission_id, approve=body.approve, by=f"api-key:{key}" if key else "")
        .to_json()
    )
