"""Review over HTTP (docs/review.md): user reports in (scope ``report``), cases and decisions for
integrators (scope ``review``), law-enforcement reports and transparency figures (``admin``).

The caller of a ``review`` route acts as a reviewer named after its API key (``api-key:<id>``); an
``admin`` key acts as an admin. The web UI uses :class:`~lifeguard.review.service.ReviewService`
directly, with its own reviewer logins.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field, ValidationError

from lifeguard.api.problems import Problem
from lifeguard.api.routes_v1 import read_upload
from lifeguard.api.routing import GuardedRoute, scoped
from lifeguard.api.state import get_state
from lifeguard.review.intake import DECISIONS, REASONS, STATUSES, SURFACES, ContentRef
from lifeguard.review.roles import Actor, Role
from lifeguard.review.service import ReviewService, UserReportIn

review_router = APIRouter(prefix="/v1", route_class=GuardedRoute)
_lock = threading.Lock()

Reason = Literal["csam", "grooming", "sextortion", "take_it_down", "other_child_safety"]
SurfaceIn = Literal["public", "private_message", "e2ee_verified"]
Decision = Literal["confirm", "false_positive", "escalate", "no_violation"]
assert set(Reason.__args__) == set(REASONS) and set(SurfaceIn.__args__) == set(SURFACES)  # type: ignore[attr-defined]
assert set(Decision.__args__) == set(DECISIONS)  # type: ignore[attr-defined]


def service(request: Request) -> ReviewService:
    """One ReviewService per app (created on first use, over the app's database)."""
    svc: ReviewService | None = getattr(request.app.state, "review", None)
    if svc is None:
        with _lock:
            svc = getattr(request.app.state, "review", None)
            if svc is None:
                st = get_state(request)
                svc = ReviewService(st.db, st.settings, banks=st.banks)
                request.app.state.review = svc
    return svc


def actor_of(request: Request) -> Actor:
    key = getattr(request.state, "key", None)
    if key is None:  # pragma: no cover - guarded routes always carry a key
        raise Problem(401, "missing_key", "no API key")
    role = Role.ADMIN if "admin" in key.scopes else Role.REVIEWER
    return Actor(f"api-key:{key.id}", role)


# ------------------------------------------------------------------------------------ schemas


class ContentRefIn(BaseModel):
    content_id: str = Field(min_length=1, max_length=256)
    md5: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{32}$")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    pdq: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")


class CaseSummaryOut(BaseModel):
    id: int
    priority: int
    category: str
    surface: str
    status: str
    created_at: dt.datetime
    first_review_due: dt.datetime
    first_reviewed_at: dt.datetime | None
    overdue: bool
    assigned_to: str | None
    item_count: int
    version: int
    escalated: bool
    decision: str | None
    reported_account: str | None
    child_at_risk_now: bool


class CaseItemOut(BaseModel):
    id: int
    kind: str
    source: str
    category: str
    surface: str
    priority: int
    content_ref: str | None
    has_media: bool
    media_deleted: bool
    mime: str | None
    hashes: dict[str, str]
    match: dict[str, Any] | None
    created_at: dt.datetime | None
    report_id: int | None


class CaseEventOut(BaseModel):
    id: int
    time: dt.datetime
    actor: str
    action: str
    details: dict[str, Any]


class CaseOut(CaseSummaryOut):
    decided_by: str | None
    decided_at: dt.datetime | None
    items: list[CaseItemOut]
    history: list[CaseEventOut]
    decisions: list[dict[str, Any]]
    appeals: list[dict[str, Any]]
    le_reports: list[dict[str, Any]]
    reports: list[dict[str, Any]]


class CaseDecisionIn(BaseModel):
    decision: Decision
    expected_version: int = Field(ge=1, description="The case version you reviewed (409 if stale).")
    note: str = Field(default="", max_length=10_000)


class CaseAppealIn(BaseModel):
    appellant: str = Field(min_length=1, max_length=256)
    reason: str = Field(default="", max_length=10_000)


class CaseAppealDecisionIn(BaseModel):
    upheld: bool
    expected_version: int = Field(ge=1)
    note: str = Field(default="", max_length=10_000)


class LeReportIn(BaseModel):
    kind: Literal["ncmec", "nca"]
    classification: Literal["A1", "A2", "B1", "B2"] | None = Field(
        default=None,
        description="Industry classification when the matched bank does not give one.",
    )


class LeReportOut(BaseModel):
    id: int
    case_id: int
    kind: str
    status: str
    reference: str
    priority: int | None
    document: str
    actor: str
    created_at: dt.datetime
    error: str


def _case(v: Any) -> dict[str, Any]:
    d: dict[str, Any] = v.to_dict()
    return d


# ------------------------------------------------------------------------------------ routes


@review_router.post(
    "/reports",
    tags=["review"],
    summary="Report content or an account (taxonomy in docs/review.md); media go to the vault",
    status_code=201,
    response_model=CaseOut,
)
@scoped("report")
async def create_report(
    request: Request,
    reporter: Annotated[str, Form(min_length=1, max_length=256)],
    reason: Annotated[Reason, Form()],
    surface: Annotated[SurfaceIn, Form()],
    reported_account: Annotated[str | None, Form(max_length=256)] = None,
    child_at_risk_now: Annotated[bool, Form()] = False,
    description: Annotated[str, Form(max_length=10_000)] = "",
    content: Annotated[
        str | None,
        Form(
            description='JSON array of {"content_id", "md5"?, "sha256"?, "pdq"?} objects.',
            max_length=200_000,
        ),
    ] = None,
    media: Annotated[list[UploadFile] | None, File(description="Attached media.")] = None,
) -> JSONResponse:
    from fastapi.concurrency import run_in_threadpool

    st = get_state(request)
    refs: list[ContentRef] = []
    if content:
        try:
            raw = json.loads(content)
            if not isinstance(raw, list):
                raise ValueError("expected a JSON array")
            refs = [ContentRef(**ContentRefIn.model_validate(x).model_dump()) for x in raw]
        except (ValueError, ValidationError) as e:
            raise Problem(
                422,
                "validation_error",
                f"content: {e}",
                errors=[{"loc": "body.content", "detail": str(e)[:500], "type": "value_error"}],
            ) from None
    rep = UserReportIn(
        reporter=reporter,
        reason=reason,
        surface=surface,
        reported_account=reported_account or None,
        content=refs,
        child_at_risk_now=child_at_risk_now,
        description=description,
    )
    files = [(f.filename or "upload", await read_upload(st, f)) for f in (media or [])]
    svc = service(request)
    key = getattr(request.state, "key", None)
    who = f"api-key:{key.id}" if key is not None else ""
    case = await run_in_threadpool(lambda: svc.submit_report(rep, files, received_by=who))
    return JSONResponse(_case(case), status_code=201)


@review_router.get(
    "/cases", tags=["review"], summary="The review queue", response_model=list[CaseSummaryOut]
)
@scoped("review")
def list_cases(
    request: Request,
    status: Annotated[
        str,
        Query(description=f"open (awaiting a reviewer), all, or one of {', '.join(STATUSES)}"),
    ] = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[dict[str, Any]]:
    svc = service(request)
    return [
        c.to_dict() for c in svc.queue(actor_of(request), status=status, limit=limit, offset=offset)
    ]


@review_router.get("/cases/{case_id}", tags=["review"], summary="One case", response_model=CaseOut)
@scoped("review")
def get_case(request: Request, case_id: int) -> dict[str, Any]:
    return _case(service(request).get_case(case_id))


@review_router.post(
    "/cases/{case_id}/decision",
    tags=["review"],
    summary="Decide a case (409 when expected_version is stale)",
    response_model=CaseOut,
)
@scoped("review")
def decide_case(request: Request, case_id: int, body: CaseDecisionIn) -> dict[str, Any]:
    v = service(request).decide(
        case_id,
        actor_of(request),
        body.decision,
        expected_version=body.expected_version,
        note=body.note,
    )
    return _case(v)


@review_router.post(
    "/cases/{case_id}/appeal",
    tags=["review"],
    summary="Appeal a decided case (on behalf of a user)",
    response_model=CaseOut,
)
@scoped("report")
def appeal_case(request: Request, case_id: int, body: CaseAppealIn) -> dict[str, Any]:
    return _case(service(request).appeal(case_id, appellant=body.appellant, reason=body.reason))


@review_router.post(
    "/cases/{case_id}/appeal-decision",
    tags=["review"],
    summary="Decide an appeal (not by the key that made the decision: 403)",
    response_model=CaseOut,
)
@scoped("review")
def decide_appeal(request: Request, case_id: int, body: CaseAppealDecisionIn) -> dict[str, Any]:
    v = service(request).decide_appeal(
        case_id,
        actor_of(request),
        upheld=body.upheld,
        expected_version=body.expected_version,
        note=body.note,
    )
    return _case(v)


@review_router.post(
    "/cases/{case_id}/le-reports",
    tags=["review"],
    summary="Build (and, if configured, submit) an NCMEC or NCA report for a confirmed case",
    status_code=201,
    response_model=LeReportOut,
)
@scoped("admin")
def create_le_report(request: Request, case_id: int, body: LeReportIn) -> dict[str, Any]:
    v = service(request).le_report(
        case_id, actor_of(request), body.kind, classification=body.classification
    )
    return v.to_dict()


@review_router.get(
    "/transparency",
    tags=["review"],
    summary="Transparency figures for the days from..to, both included (docs/review.md)",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
@scoped("admin")
def transparency(
    request: Request,
    start: Annotated[dt.date, Query(alias="from", description="First day (UTC), YYYY-MM-DD.")],
    end: Annotated[dt.date, Query(alias="to", description="Last day (UTC), included.")],
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response:
    from lifeguard.reports.transparency import transparency_report

    rep = transparency_report(get_state(request).db, start, end + dt.timedelta(days=1))
    if format == "csv":
        return PlainTextResponse(rep.to_csv(), media_type="text/csv; charset=utf-8")
    return JSONResponse(rep.to_dict())
