"""Law-enforcement reports from review cases: a confirmed case becomes a
:class:`~lifeguard.reports.lereports.LeReportInput`, then NCMEC report XML or an NCA package, built
with the existing builders (reports/ncmec.py, reports/nca.py). When an endpoint is configured
(``LIFEGUARD_LE_*``) the report is submitted with the existing clients, which record every request in
``le_submission``; otherwise it is only built, and that is recorded (``kind="built"``).

Four eyes: the builders require a senior sign-off by someone other than the confirming reviewer, so
the senior who files the report must not be the person who confirmed the case.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import mimetypes
from typing import TYPE_CHECKING, Any

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select

from lifeguard.banks.service import aware
from lifeguard.errors import NotFound
from lifeguard.reports.lereports import (
    Confirmation,
    Contact,
    Detection,
    FileHashes,
    Incident,
    IncidentType,
    IndustryClassification,
    InternetDetails,
    LeReportError,
    LeReportInput,
    NotConfirmed,
    ReportAnnotation,
    ReportedUser,
    Reporter,
    ReportFile,
    Surface,
    record_submission,
)
from lifeguard.review.intake import ReviewError
from lifeguard.review.models import ReviewCase, ReviewCaseItem, ReviewLeReport
from lifeguard.review.roles import Actor, Role
from lifeguard.store.models import utcnow

if TYPE_CHECKING:
    from lifeguard.review.service import LeReportView, ReviewService

KINDS = ("ncmec", "nca")
_INCIDENT = {
    "csam": IncidentType.CHILD_PORNOGRAPHY,
    "take_it_down": IncidentType.CHILD_PORNOGRAPHY,
    "grooming": IncidentType.ONLINE_ENTICEMENT,
    "sextortion": IncidentType.ONLINE_ENTICEMENT,
    "other_child_safety": IncidentType.CHILD_PORNOGRAPHY,
}
#: NCMEC ``reportAnnotations`` a case's category implies.
_ANNOTATIONS: dict[str, tuple[ReportAnnotation, ...]] = {
    "sextortion": (ReportAnnotation.SEXTORTION,),
}
_SURFACE = {
    "public": Surface.PUBLIC_POST,
    "private_message": Surface.PRIVATE_MESSAGE,
    "e2ee_verified": Surface.E2EE_VERIFIED_REPORT,
    "unknown": Surface.CHAT_IM,
}
_DETECTION = {
    "match": Detection.HASH_MATCH,
    "report": Detection.USER_REPORT,
    "signal": Detection.CLASSIFIER,
}
_ROLE = {Role.REVIEWER.value: "reviewer", Role.SENIOR.value: "senior_reviewer", "admin": "admin"}
_CLASSES = {c.value for c in IndustryClassification}


class LeSettings(BaseSettings):
    """The reporting provider and, optionally, the endpoints (``LIFEGUARD_LE_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="LIFEGUARD_LE_", env_file=".env", extra="ignore")

    company: str = ""
    service: str = ""
    contact_first_name: str = ""
    contact_last_name: str = ""
    contact_email: str = ""
    nca_registration_id: str = ""
    #: NCMEC CyberTipline: empty base URL means build only, do not submit.
    ncmec_base_url: str = ""
    ncmec_username: str = ""
    ncmec_password: str = ""
    #: NCA endpoint: empty base URL means build only.
    nca_base_url: str = ""
    nca_token: str = ""
    max_attempts: int = 4


def _reporter(le: LeSettings) -> Reporter:
    missing = [
        f"LIFEGUARD_LE_{k.upper()}"
        for k in ("company", "service", "contact_first_name", "contact_last_name", "contact_email")
        if not getattr(le, k).strip()
    ]
    if missing:
        raise LeReportError(
            "law-enforcement reports need the provider's details: set " + ", ".join(missing)
        )
    person = Contact(le.contact_first_name, le.contact_last_name, le.contact_email)
    return Reporter(
        company=le.company,
        service=le.service,
        reporting_person=person,
        nca_registration_id=le.nca_registration_id,
    )


def _classification(item: ReviewCaseItem, given: str | None) -> IndustryClassification:
    cats = [str(c).upper() for c in ((item.match or {}).get("categories") or [])]
    found = next((c for c in cats if c in _CLASSES), None)
    if found:
        return IndustryClassification(found)
    if given is None:
        raise LeReportError(
            f"item {item.id}: no industry classification (A1, A2, B1, B2) from its bank; "
            "give one (classification)"
        )
    if given not in _CLASSES:
        raise ReviewError(f"classification {given!r} is not one of {', '.join(sorted(_CLASSES))}")
    return IndustryClassification(given)


def build_input(
    svc: ReviewService,
    case: ReviewCase,
    items: list[ReviewCaseItem],
    actor: Actor,
    le: LeSettings,
    *,
    classification: str | None,
    now: dt.datetime,
) -> LeReportInput:
    files: list[ReportFile] = []
    for it in items:
        if not (it.md5 or it.sha256 or it.pdq):
            continue
        content: bytes | None = None
        if it.evidence_id and not it.media_deleted:
            content = svc.vault.get(
                it.evidence_id,
                actor=actor.audit_name,
                reason=f"law-enforcement report for case {case.id}",
            ).content
        ext = (mimetypes.guess_extension(it.mime or "") or "") if it.mime else ""
        bank = str((it.match or {}).get("bank") or "")
        files.append(
            ReportFile(
                original_name=f"case-{case.id}-item-{it.id}{ext}",
                hashes=FileHashes(md5=it.md5 or "", sha256=it.sha256 or "", pdq=it.pdq or ""),
                classification=_classification(it, classification),
                viewed_by_esp=content is not None,
                detection=_DETECTION.get(it.source, Detection.MODERATOR),
                matched_list=bank,
                content=content,
            )
        )
    if not files:
        raise LeReportError(f"case {case.id} has no item with hashes to report")
    decided_at = aware(case.decided_at or now)
    sources = sorted({it.source for it in items})
    return LeReportInput(
        case_ref=f"lifeguard-case-{case.id}",
        incident=Incident(
            type=_INCIDENT.get(case.category, IncidentType.CHILD_PORNOGRAPHY),
            time=aware(case.created_at),
            summary=(
                f"{case.category} case {case.id}: {len(items)} item(s) detected by "
                f"{', '.join(sources)}; confirmed in human review"
            ),
            escalate="child at risk now (reported)" if case.child_at_risk_now else "",
            child_at_immediate_risk=bool(case.child_at_risk_now),
            ongoing_abuse=case.category in ("grooming", "sextortion"),
            annotations=_ANNOTATIONS.get(case.category, ()),
        ),
        reporter=_reporter(le),
        reported_users=(ReportedUser(esp_identifier=case.reported_account or "unknown"),),
        files=tuple(files),
        internet=InternetDetails(surface=_SURFACE.get(case.surface, Surface.CHAT_IM)),
        confirmed_by=Confirmation(
            reviewer=case.decided_by or "",
            role=_ROLE.get(case.decided_by_role or "", "reviewer"),
            time=decided_at,
        ),
        senior_confirmation=Confirmation(
            reviewer=actor.id, role=_ROLE[actor.role.value], time=max(now, decided_at)
        ),
    )


def make_le_report(
    svc: ReviewService,
    case_id: int,
    actor: Actor,
    kind: str,
    *,
    classification: str | None = None,
) -> LeReportView:
    from lifeguard.reports.nca import NcaClient, NcaConfig, build_nca_package, export_json
    from lifeguard.reports.ncmec import (
        NcmecClient,
        NcmecConfig,
        NcmecError,
        build_file_details_xml,
        build_report_xml,
    )
    from lifeguard.review.service import LeReportView, _check_id

    if kind not in KINDS:
        raise ReviewError(f"kind {kind!r}: expected ncmec or nca")
    le: LeSettings = getattr(svc, "le", None) or LeSettings()
    now = utcnow()
    with svc.db.read_session() as s:
        case = s.get(ReviewCase, _check_id(case_id, "case"))
        if case is None:
            raise NotFound(f"case {case_id} not found")
        if case.decision != "confirm":
            raise NotConfirmed(
                f"case {case_id} is not confirmed (status {case.status}, decision "
                f"{case.decision or 'none'}); only confirmed cases are reported"
            )
        items = list(
            s.execute(
                select(ReviewCaseItem)
                .where(ReviewCaseItem.case_id == case_id)
                .order_by(ReviewCaseItem.id)
            ).scalars()
        )
        prior_ncmec = [
            r.reference
            for r in s.execute(
                select(ReviewLeReport).where(
                    ReviewLeReport.case_id == case_id,
                    ReviewLeReport.kind == "ncmec",
                    ReviewLeReport.status == "submitted",
                )
            ).scalars()
            if r.reference
        ]
    inp = build_input(svc, case, items, actor, le, classification=classification, now=now)
    status, reference, priority, error = "built", "", None, ""
    document: str
    submit_error: Exception | None = None
    if kind == "ncmec":
        document = build_report_xml(inp).decode("utf-8")
        if le.ncmec_base_url:
            client = NcmecClient(
                NcmecConfig(
                    le.ncmec_username, le.ncmec_password, le.ncmec_base_url,
                    max_attempts=le.max_attempts, backoff_s=0.05,
                ),
                svc.db,
            )  # fmt: skip
            try:
                reference = client.submit(
                    document.encode("utf-8"), case_ref=inp.case_ref, actor=actor.audit_name
                )
                try:
                    for n, f in enumerate(inp.files, 1):
                        if f.content is None:
                            continue
                        fid = client.upload(
                            reference, f"evidence-{n}", f.content,
                            case_ref=inp.case_ref, actor=actor.audit_name,
                        )  # fmt: skip
                        client.fileinfo(
                            build_file_details_xml(reference, fid, f),
                            case_ref=inp.case_ref,
                            actor=actor.audit_name,
                        )
                    client.finish(reference, case_ref=inp.case_ref, actor=actor.audit_name)
                except Exception:
                    with contextlib.suppress(NcmecError):
                        client.retract(reference, case_ref=inp.case_ref, actor=actor.audit_name)
                    raise
                status = "submitted"
            except Exception as e:  # recorded on the case, then raised
                status, error, submit_error = "failed", str(e)[:2000], e
    else:
        done = {f.original_name: prior_ncmec[-1] for f in inp.files} if prior_ncmec else None
        pkg: dict[str, Any] = build_nca_package(
            inp, declared_by=actor.id, ncmec_report_ids=done, now=now
        )
        document = export_json(pkg)
        priority = int(pkg["priority"]["level"])
        if le.nca_base_url:
            nca = NcaClient(
                NcaConfig(
                    le.nca_base_url, le.nca_token, max_attempts=le.max_attempts, backoff_s=0.05
                ),
                svc.db,
            )
            try:
                res = nca.submit(
                    inp, actor=actor.audit_name, declared_by=actor.id, ncmec_report_ids=done
                )
                status = "submitted" if res.submitted else "skipped"
                reference = res.reference
            except Exception as e:
                status, error, submit_error = "failed", str(e)[:2000], e
    with svc.db.session() as s:
        if status == "built":
            record_submission(
                s, target=kind, kind="built", case_ref=inp.case_ref, attempt=0,
                http_status=None, response_code=None, response_body="",
                error="no endpoint configured: built, not submitted", actor=actor.audit_name,
            )  # fmt: skip
        row = ReviewLeReport(
            case_id=case_id, created_at=now, kind=kind, actor=actor.id, status=status,
            reference=reference, priority=priority, document=document, error=error,
        )  # fmt: skip
        s.add(row)
        s.flush()
        from lifeguard.review.service import ReviewService as _Svc

        _Svc._event(
            s, case_id, actor.id, "le_report",
            {"kind": kind, "status": status, "reference": reference}, now,
        )  # fmt: skip
        _Svc._audit(
            s, actor.audit_name, "review.le_report", case_id,
            {"kind": kind, "status": status, "reference": reference, "error": error[:500]},
        )  # fmt: skip
        view = LeReportView(
            id=int(row.id), case_id=case_id, kind=kind, status=status, reference=reference,
            priority=priority, document=document, actor=actor.id, created_at=aware(now),
            error=error,
        )  # fmt: skip
    if submit_error is not None:
        raise submit_error
    return view
