"""UK National Crime Agency reports (Online Safety Act 2023 s.66; SI 2026/268).

Builds the report package with the Schedule 1 information — the reporting provider and person, the
content and how it was detected, the user identifiers, and the declaration — plus a priority
assessment, exports it as versioned JSON (schema ``lifeguard.nca-report`` 1.0, documented in
docs/law-enforcement-reports.md) and submits it to an NCA-like endpoint, recording every attempt.

Content already reported to NCMEC is treated as reported (s.66 as applied by the regulations): it
is marked ``already_reported_to_ncmec`` in the package, and when *every* item is already reported
no NCA submission is needed (:func:`outstanding_content`, :meth:`NcaClient.submit` skips, recorded).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lifeguard.errors import LifeguardError
from lifeguard.reports.lereports import (
    FileAnnotation,
    IncidentType,
    LeReportError,
    LeReportInput,
    ReportFile,
    check_endpoint,
    iso_time,
    record_submission,
    require_senior_confirmation,
)
from lifeguard.store.db import Database

SCHEMA = "lifeguard.nca-report"
SCHEMA_VERSION = "1.0"
DECLARATION_TEXT = (
    "I declare that, to the best of my knowledge and belief, the information in this report is "
    "accurate and complete, and that it is made under section 66 of the Online Safety Act 2023."
)

#: Incident types that involve contact with, or exploitation of, a specific child.
_CONTACT_TYPES = frozenset(
    {
        IncidentType.ONLINE_ENTICEMENT,
        IncidentType.CHILD_SEX_TRAFFICKING,
        IncidentType.CHILD_SEXUAL_MOLESTATION,
        IncidentType.CHILD_SEX_TOURISM,
        IncidentType.UNSOLICITED_OBSCENE_MATERIAL,
    }
)
_P2_ANNOTATIONS = frozenset(
    {FileAnnotation.POSSIBLE_SELF_PRODUCTION, FileAnnotation.LIVE_STREAMING}
)


class NcaError(LifeguardError):
    code = "nca_error"

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


@dataclass(frozen=True)
class Priority:
    level: int  # 1 (highest) .. 3
    reasons: tuple[str, ...]


def assess_priority(inp: LeReportInput) -> Priority:
    """The priority rule (documented in docs/law-enforcement-reports.md):

    1. **Priority 1** — a child is at immediate risk or harm is imminent: the reviewer set
       ``incident.child_at_immediate_risk`` or gave an ``escalate`` reason.
    2. **Priority 2** — no immediate risk, but a specific child is, or may be, being abused or
       exploited now: ``incident.ongoing_abuse``; or an incident type involving contact with a child
       (enticement/grooming, trafficking, molestation, tourism, obscene material sent to a child); or
       an identified victim on the service (a victim with a provider identifier); or content tagged
       possibly self-produced or live-streamed (suggests a reachable child).
    3. **Priority 3** — everything else, e.g. circulation of previously known material matched by
       hash with no identified child.

    Every rule that fired is listed in ``reasons`` (the highest level wins).
    """
    p1: list[str] = []
    p2: list[str] = []
    if inp.incident.child_at_immediate_risk:
        p1.append("reviewer: child at immediate risk")
    if inp.incident.escalate:
        p1.append(f"escalated: {inp.incident.escalate}")
    if inp.incident.ongoing_abuse:
        p2.append("reviewer: ongoing abuse of a child")
    if inp.incident.type in _CONTACT_TYPES:
        p2.append(f"incident type involves contact with a child: {inp.incident.type}")
    if any(v.esp_identifier for v in inp.victims):
        p2.append("identified victim on the service")
    tagged = sorted({str(a) for f in inp.files for a in f.annotations if a in _P2_ANNOTATIONS})
    if tagged:
        p2.append("content tagged " + ", ".join(tagged))
    if p1:
        return Priority(1, tuple(p1 + p2))
    if p2:
        return Priority(2, tuple(p2))
    return Priority(3, ("no immediate risk or identified child: known-material circulation",))


def outstanding_content(
    inp: LeReportInput, ncmec_report_ids: Mapping[str, str] | None = None
) -> list[ReportFile]:
    """Files not yet reported to NCMEC (``ReportFile.ncmec_report_id``, or the mapping from
    original file name to a CyberTipline reportId for files reported in this run)."""
    done = ncmec_report_ids or {}
    return [f for f in inp.files if not (f.ncmec_report_id or done.get(f.original_name))]


def build_nca_package(
    inp: LeReportInput,
    *,
    declared_by: str,
    ncmec_report_ids: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The NCA report package (JSON-ready dict). Raises NotConfirmed without senior sign-off."""
    senior = require_senior_confirmation(inp)
    if not declared_by.strip():
        raise LeReportError("declared_by is required (the person making the declaration)")
    now = now or dt.datetime.now(dt.UTC)
    done = ncmec_report_ids or {}
    prio = assess_priority(inp)
    rep = inp.reporter

    def contact(c: Any) -> dict[str, str] | None:
        if c is None:
            return None
        return {"first_name": c.first_name, "last_name": c.last_name, "email": c.email,
                "phone": c.phone}  # fmt: skip

    content = []
    for f in inp.files:
        ncmec_id = f.ncmec_report_id or done.get(f.original_name, "")
        content.append(
            {
                "original_file_name": f.original_name,
                "hashes": dict(f.hashes.items()),
                "industry_classification": str(f.classification),
                "annotations": [str(a) for a in f.annotations],
                "detection": {"method": str(f.detection), "matched_list": f.matched_list},
                "surface": str(inp.internet.surface),
                "location_url": inp.internet.url,
                "viewed_by_provider": f.viewed_by_esp,
                "publicly_available": f.publicly_available,
                "already_reported_to_ncmec": bool(ncmec_id),
                "ncmec_report_id": ncmec_id or None,
            }
        )
    users = []
    for u in inp.reported_users:
        users.append(
            {
                "provider_user_id": u.esp_identifier,
                "screen_name": u.screen_name,
                "display_names": list(u.display_names),
                "emails": list(u.emails),
                "profile_url": u.profile_url,
                "ip_addresses": [
                    {
                        "ip": ip.ip,
                        "event": str(ip.event),
                        "time": iso_time(ip.time) if ip.time else None,
                        "port": ip.port,
                        "possible_proxy": ip.possible_proxy,
                    }
                    for ip in u.ips
                ],
                "devices": [
                    {
                        "type": d.id_type,
                        "value": d.value,
                        "event": str(d.event),
                        "time": iso_time(d.time) if d.time else None,
                    }
                    for d in u.devices
                ],
                "estimated_location": (
                    None
                    if u.location is None
                    else {
                        "city": u.location.city,
                        "region": u.location.region,
                        "country_code": u.location.country_code,
                        "verified": u.location.verified,
                    }
                ),
            }
        )
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "report_ref": inp.case_ref,
        "created_at": iso_time(now),
        "priority": {"level": prio.level, "reasons": list(prio.reasons)},
        "reporting_provider": {
            "name": rep.company,
            "service": rep.service,
            "nca_registration_id": rep.nca_registration_id or None,
            "reporting_person": contact(rep.reporting_person),
            "contact_person": contact(rep.contact_person),
            "legal_url": rep.legal_url,
        },
        "incident": {
            "type": str(inp.incident.type),
            "time": iso_time(inp.incident.time),
            "summary": inp.incident.summary,
            "surface": str(inp.internet.surface),
            "additional_info": inp.additional_info,
        },
        "content": content,
        "outstanding_content_count": sum(1 for c in content if not c["already_reported_to_ncmec"]),
        "users": users,
        "victims": [
            {
                "age_band": str(v.age_band),
                "provider_user_id": v.esp_identifier,
                "screen_name": v.screen_name,
                "notes": v.notes,
            }
            for v in inp.victims
        ],
        "review": {
            "confirmed_by": inp.confirmed_by.reviewer,
            "confirmed_at": iso_time(inp.confirmed_by.time),
            "senior_reviewer": senior.reviewer,
            "senior_confirmed_at": iso_time(senior.time),
        },
        "declaration": {
            "text": DECLARATION_TEXT,
            "declared_by": declared_by,
            "declared_at": iso_time(now),
            "confirmed": True,
        },
    }


def export_json(package: Mapping[str, Any]) -> str:
    """The package as canonical JSON (sorted keys, UTF-8 characters kept, 2-space indent)."""
    return json.dumps(package, indent=2, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class NcaConfig:
    """The NCA-like endpoint. The real NCA API's address and authentication are issued on
    registration and are not public: ``base_url``/``token`` are placeholders to be set."""

    base_url: str
    token: str
    path: str = "/api/v1/reports"
    timeout_s: float = 60.0
    max_attempts: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        check_endpoint("NCA", self.base_url, self.max_attempts)


@dataclass(frozen=True)
class NcaResult:
    submitted: bool
    reference: str
    priority: int
    package: dict[str, Any]


_TRANSIENT = frozenset({429, 500, 502, 503, 504})


class NcaClient:
    """Submits packages; records every attempt in ``le_submission`` (target ``nca``). Only HTTP
    429/5xx and a refused connection are retried (back-off doubling); a lost answer is raised, not
    retried, so a report is never filed twice silently."""

    def __init__(
        self,
        config: NcaConfig,
        db: Database | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.db = db
        self._sleep = sleep

    def _record(self, **kw: Any) -> None:
        if self.db is None:
            return
        with self.db.session() as s:
            record_submission(s, target="nca", **kw)

    def submit(
        self,
        inp: LeReportInput,
        *,
        actor: str,
        declared_by: str,
        ncmec_report_ids: Mapping[str, str] | None = None,
        force: bool = False,
    ) -> NcaResult:
        pkg = build_nca_package(inp, declared_by=declared_by, ncmec_report_ids=ncmec_report_ids)
        prio = int(pkg["priority"]["level"])
        if pkg["outstanding_content_count"] == 0 and not force:
            self._record(
                kind="skipped", case_ref=inp.case_ref, attempt=0, http_status=None,
                response_code=None, response_body="",
                error="all content already reported to NCMEC (treated as reported)", actor=actor,
            )  # fmt: skip
            return NcaResult(submitted=False, reference="", priority=prio, package=pkg)
        body = export_json(pkg).encode()
        url = self.config.base_url.rstrip("/") + self.config.path
        last = ""
        for attempt in range(1, self.config.max_attempts + 1):
            req = urllib.request.Request(url, data=body, method="POST")
            req.add_header("Authorization", f"Bearer {self.config.token}")
            req.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:
                    status, raw = int(resp.status), resp.read()
            except urllib.error.HTTPError as e:
                status, raw = int(e.code), e.read()
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                reason = getattr(e, "reason", e)
                self._record(
                    kind="submit", case_ref=inp.case_ref, attempt=attempt, http_status=None,
                    response_code=None, response_body="", error=f"connection: {reason}",
                    actor=actor,
                )  # fmt: skip
                if not isinstance(reason, ConnectionRefusedError):
                    raise NcaError(
                        f"NCA submit: connection lost, outcome unknown: {reason}"
                    ) from None
                last = f"connection refused: {reason}"
                self._backoff(attempt)
                continue
            text = raw.decode("utf-8", "replace")
            ref = ""
            if status == 201:
                try:
                    ref = str(json.loads(raw).get("reference") or "")
                except (json.JSONDecodeError, AttributeError):
                    ref = ""
            self._record(
                kind="submit", case_ref=inp.case_ref, attempt=attempt, http_status=status,
                response_code=None, response_body=text, report_id=ref,
                error="" if ref else f"HTTP {status}", actor=actor,
            )  # fmt: skip
            if status == 201 and ref:
                return NcaResult(submitted=True, reference=ref, priority=prio, package=pkg)
            if status == 201:
                raise NcaError("NCA submit: accepted without a reference", http_status=status)
            if status not in _TRANSIENT:
                raise NcaError(
                    f"NCA submit rejected (HTTP {status}): {text[:500]}", http_status=status
                )
            last = f"HTTP {status}"
            self._backoff(attempt)
        raise NcaError(f"NCA submit: {last} (gave up after {self.config.max_attempts} attempts)")

    def _backoff(self, attempt: int) -> None:
        if attempt < self.config.max_attempts:
            self._sleep(min(self.config.backoff_s * 2 ** (attempt - 1), self.config.backoff_max_s))
