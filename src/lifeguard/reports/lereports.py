"""Typed input shared by the law-enforcement report builders (NCMEC CyberTipline, UK NCA).

Cases do not exist yet, so reports are built from a :class:`LeReportInput`: frozen dataclasses that
a later case pipeline fills in. Every value is validated on construction (``LeReportError`` with a
precise message), and a report can only be built once a *senior* reviewer has confirmed it
(:func:`require_senior_confirmation`), as issue 5 requires.

Submission records: :func:`record_submission` writes one :class:`~lifeguard.reports.le_models.
LeSubmission` row per HTTP request (first try and every retry) and calls the audit hook.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from lifeguard.errors import LifeguardError


class LeReportError(LifeguardError):
    """A report input is incomplete or invalid, or the report is not allowed to be built."""

    code = "le_report_invalid"


class NotConfirmed(LeReportError):
    """No senior-reviewer confirmation: law-enforcement reports may not be built."""

    code = "le_report_not_confirmed"


class IncidentType(enum.StrEnum):
    """NCMEC ``incidentType`` values (published enumeration)."""

    CHILD_PORNOGRAPHY = "Child Pornography (possession, manufacture, and distribution)"
    CHILD_SEX_TRAFFICKING = "Child Sex Trafficking"
    CHILD_SEX_TOURISM = "Child Sex Tourism"
    CHILD_SEXUAL_MOLESTATION = "Child Sexual Molestation"
    MISLEADING_DOMAIN_NAME = "Misleading Domain Name"
    MISLEADING_WORDS_OR_IMAGES = "Misleading Words or Digital Images on the Internet"
    ONLINE_ENTICEMENT = "Online Enticement of Children for Sexual Acts"
    UNSOLICITED_OBSCENE_MATERIAL = "Unsolicited Obscene Material Sent to a Child"


class ReportAnnotation(enum.StrEnum):
    """NCMEC ``reportAnnotations`` tags on the incident summary (XSD ``reportAnnotations``)."""

    SEXTORTION = "sextortion"
    CSAM_SOLICITATION = "csamSolicitation"
    MINOR_TO_MINOR_INTERACTION = "minorToMinorInteraction"
    SPAM = "spam"
    SADISTIC_ONLINE_EXPLOITATION = "sadisticOnlineExploitation"


class Surface(enum.StrEnum):
    """Where on the service the content was found."""

    PUBLIC_POST = "public_post"
    PRIVATE_MESSAGE = "private_message"
    E2EE_VERIFIED_REPORT = "e2ee_verified_report"
    CHAT_IM = "chat_im"


class Detection(enum.StrEnum):
    """How the content was detected (NCA Schedule 1: 'how it was detected')."""

    HASH_MATCH = "hash_match"
    USER_REPORT = "user_report"
    CLASSIFIER = "classifier"
    MODERATOR = "moderator"


class IndustryClassification(enum.StrEnum):
    """The industry categorisation scale used by NCMEC ``industryClassification``."""

    A1 = "A1"
    A2 = "A2"
    B1 = "B1"
    B2 = "B2"


class FileAnnotation(enum.StrEnum):
    """NCMEC ``fileAnnotations`` tags (published enumeration)."""

    ANIME_DRAWING_VIRTUAL_HENTAI = "animeDrawingVirtualHentai"
    POTENTIAL_MEME = "potentialMeme"
    VIRAL = "viral"
    POSSIBLE_SELF_PRODUCTION = "possibleSelfProduction"
    PHYSICAL_HARM = "physicalHarm"
    VIOLENCE_GORE = "violenceGore"
    BESTIALITY = "bestiality"
    LIVE_STREAMING = "liveStreaming"
    INFANT = "infant"
    GENERATIVE_AI = "generativeAi"


class IpEvent(enum.StrEnum):
    """NCMEC ``eventName`` values for IP and device capture events."""

    LOGIN = "Login"
    REGISTRATION = "Registration"
    PURCHASE = "Purchase"
    UPLOAD = "Upload"
    OTHER = "Other"
    UNKNOWN = "Unknown"


class AgeBand(enum.StrEnum):
    """Estimated victim age band (our own scale; NCMEC takes an approximate ``age``)."""

    INFANT_0_2 = "0-2"
    CHILD_3_7 = "3-7"
    CHILD_8_12 = "8-12"
    TEEN_13_15 = "13-15"
    TEEN_16_17 = "16-17"
    UNKNOWN = "unknown"


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HEX = re.compile(r"^[0-9a-f]+$")
_HASH_LEN = {"md5": 32, "sha256": 64, "pdq": 64}
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def _need(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LeReportError(f"{what} is required")
    return value


def _aware(t: dt.datetime, what: str) -> dt.datetime:
    if not isinstance(t, dt.datetime):
        raise LeReportError(f"{what} must be a datetime, got {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise LeReportError(f"{what} must be timezone-aware (got naive {t.isoformat()})")
    return t


def _email(value: str, what: str) -> str:
    if not _EMAIL.match(value):
        raise LeReportError(f"{what} is not an email address: {value!r}")
    return value


@dataclass(frozen=True)
class Incident:
    type: IncidentType
    time: dt.datetime
    summary: str
    #: Reason for urgency (e.g. "child at immediate risk"); non-empty escalates the NCMEC report.
    escalate: str = ""
    #: Someone (a child) is at immediate risk or harm is imminent: NCA priority 1.
    child_at_immediate_risk: bool = False
    #: Ongoing contact abuse / grooming of an identified child (NCA priority 2, see nca.py).
    ongoing_abuse: bool = False
    #: NCMEC report tags (e.g. sextortion); each at most once.
    annotations: tuple[ReportAnnotation, ...] = ()

    def __post_init__(self) -> None:
        IncidentType(self.type)
        for a in self.annotations:
            ReportAnnotation(a)
        _aware(self.time, "incident.time")
        _need(self.summary, "incident.summary")


@dataclass(frozen=True)
class Contact:
    """A reporting or contact person at the provider."""

    first_name: str
    last_name: str
    email: str
    phone: str = ""

    def __post_init__(self) -> None:
        _need(self.first_name, "contact first name")
        _need(self.last_name, "contact last name")
        _email(self.email, "contact email")


@dataclass(frozen=True)
class Reporter:
    """The provider (company) and the person reporting."""

    company: str
    service: str
    reporting_person: Contact
    contact_person: Contact | None = None
    terms_of_service: str = ""
    legal_url: str = ""
    #: UK registration number with the NCA (SI 2026/268), if registered.
    nca_registration_id: str = ""

    def __post_init__(self) -> None:
        _need(self.company, "reporter.company")
        _need(self.service, "reporter.service")


@dataclass(frozen=True)
class IpCapture:
    ip: str
    event: IpEvent = IpEvent.UNKNOWN
    time: dt.datetime | None = None
    possible_proxy: bool = False
    port: int | None = None

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.ip)
        except ValueError:
            raise LeReportError(f"not an IP address: {self.ip!r}") from None
        IpEvent(self.event)
        if self.time is not None:
            _aware(self.time, "ip capture time")
        if self.port is not None and not 0 < self.port < 65536:
            raise LeReportError(f"port out of range: {self.port}")


@dataclass(frozen=True)
class DeviceId:
    id_type: str  # e.g. IMEI, ICCID, SSID, or a platform device id type
    value: str
    event: IpEvent = IpEvent.UNKNOWN
    time: dt.datetime | None = None

    def __post_init__(self) -> None:
        _need(self.id_type, "device id type")
        _need(self.value, "device id value")
        if self.time is not None:
            _aware(self.time, "device id time")


@dataclass(frozen=True)
class Location:
    city: str = ""
    region: str = ""
    country_code: str = ""
    verified: bool = False

    def __post_init__(self) -> None:
        if self.country_code and not _COUNTRY.match(self.country_code):
            raise LeReportError(f"country code must be ISO 3166-1 alpha-2: {self.country_code!r}")


@dataclass(frozen=True)
class ReportedUser:
    esp_identifier: str
    screen_name: str = ""
    display_names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    ips: tuple[IpCapture, ...] = ()
    devices: tuple[DeviceId, ...] = ()
    location: Location | None = None
    profile_url: str = ""

    def __post_init__(self) -> None:
        _need(self.esp_identifier, "reported user esp_identifier")
        for e in self.emails:
            _email(e, "reported user email")


@dataclass(frozen=True)
class Victim:
    age_band: AgeBand = AgeBand.UNKNOWN
    esp_identifier: str = ""
    screen_name: str = ""
    location: Location | None = None
    notes: str = ""


@dataclass(frozen=True)
class FileHashes:
    md5: str = ""
    sha256: str = ""
    pdq: str = ""

    def __post_init__(self) -> None:
        for name, want in _HASH_LEN.items():
            v = getattr(self, name)
            if v and (len(v) != want or not _HEX.match(v)):
                raise LeReportError(f"{name} must be {want} lowercase hex digits, got {v!r}")
        if not (self.md5 or self.sha256 or self.pdq):
            raise LeReportError("a file needs at least one hash (md5, sha256 or pdq)")

    def items(self) -> list[tuple[str, str]]:
        return [(k, getattr(self, k)) for k in ("md5", "sha256", "pdq") if getattr(self, k)]


@dataclass(frozen=True)
class ReportFile:
    original_name: str
    hashes: FileHashes
    classification: IndustryClassification
    viewed_by_esp: bool
    exif_viewed: bool = False
    publicly_available: bool = False
    annotations: tuple[FileAnnotation, ...] = ()
    detection: Detection = Detection.HASH_MATCH
    #: The matched bank / list ("how it was detected" detail), e.g. "NCMEC_HASHES".
    matched_list: str = ""
    #: Evidence bytes to upload (None: hashes only, no upload).
    content: bytes | None = field(default=None, repr=False)
    #: CyberTipline report id if this content was already reported to NCMEC.
    ncmec_report_id: str = ""

    def __post_init__(self) -> None:
        _need(self.original_name, "file original_name")
        IndustryClassification(self.classification)
        for a in self.annotations:
            FileAnnotation(a)
        Detection(self.detection)


@dataclass(frozen=True)
class InternetDetails:
    surface: Surface
    url: str = ""
    chat_client: str = ""
    chat_room: str = ""

    def __post_init__(self) -> None:
        Surface(self.surface)


@dataclass(frozen=True)
class Confirmation:
    reviewer: str
    role: str  # "reviewer" | "senior_reviewer" | "admin"
    time: dt.datetime

    def __post_init__(self) -> None:
        _need(self.reviewer, "confirmation reviewer")
        if self.role not in ("reviewer", "senior_reviewer", "admin"):
            raise LeReportError(f"unknown reviewer role {self.role!r}")
        _aware(self.time, "confirmation time")


@dataclass(frozen=True)
class LeReportInput:
    """Everything a law-enforcement report is built from (one incident, one reported user)."""

    case_ref: str
    incident: Incident
    reporter: Reporter
    reported_users: tuple[ReportedUser, ...]
    files: tuple[ReportFile, ...]
    internet: InternetDetails
    confirmed_by: Confirmation
    senior_confirmation: Confirmation | None = None
    victims: tuple[Victim, ...] = ()
    additional_info: str = ""

    def __post_init__(self) -> None:
        _need(self.case_ref, "case_ref")
        if not self.reported_users:
            raise LeReportError("at least one reported user is required")
        if not self.files:
            raise LeReportError("at least one file is required")


def require_senior_confirmation(inp: LeReportInput) -> Confirmation:
    """The senior sign-off, or :class:`NotConfirmed`. The senior reviewer must have the
    ``senior_reviewer`` (or ``admin``) role, be a different person from the first reviewer and
    sign off no earlier than the first confirmation."""
    s = inp.senior_confirmation
    if s is None:
        raise NotConfirmed(f"case {inp.case_ref}: no senior-reviewer confirmation")
    if s.role not in ("senior_reviewer", "admin"):
        raise NotConfirmed(f"case {inp.case_ref}: sign-off by {s.reviewer} has role {s.role}")
    if s.reviewer == inp.confirmed_by.reviewer:
        raise NotConfirmed(f"case {inp.case_ref}: senior sign-off by the confirming reviewer")
    if s.time < inp.confirmed_by.time:
        raise NotConfirmed(f"case {inp.case_ref}: senior sign-off precedes the confirmation")
    return s


def iso_time(t: dt.datetime) -> str:
    """ISO 8601 with offset, seconds precision (e.g. ``2026-11-25T09:00:00Z``)."""
    s = t.astimezone(dt.UTC).replace(microsecond=0).isoformat()
    return s.replace("+00:00", "Z")


# --- submission records ---------------------------------------------------------------------


def record_submission(
    session: Session,
    *,
    target: str,
    kind: str,
    case_ref: str,
    attempt: int,
    http_status: int | None,
    response_code: int | None,
    response_body: str,
    report_id: str = "",
    file_id: str = "",
    error: str = "",
    actor: str = "",
) -> int:
    """Write one request/response record (and the audit record when audit exists). Returns id."""
    from lifeguard.reports.le_models import LeSubmission

    row = LeSubmission(
        target=target,
        kind=kind,
        case_ref=case_ref,
        attempt=attempt,
        http_status=http_status,
        response_code=response_code,
        response_snippet=response_body[:2000],
        report_id=report_id,
        file_id=file_id,
        error=error[:2000],
        actor=actor,
    )
    session.add(row)
    session.flush()
    _audit(
        session,
        actor=actor or "system",
        action=f"le_report.{target}.{kind}",
        subject_type="le_report",
        subject_id=case_ref,
        details={
            "attempt": attempt,
            "http_status": http_status,
            "response_code": response_code,
            "report_id": report_id,
            "file_id": file_id,
            "error": error[:500],
        },
    )
    return int(row.id)


def _audit(session: Session, **kw: Any) -> None:
    """Audit hook: ``lifeguard.reports.audit.record`` (hash-chained log), in the same transaction
    as the ``le_submission`` row. The import is guarded so this module works without it."""
    try:
        from lifeguard.reports.audit import record
    except ImportError:  # pragma: no cover - audit is part of the reports package
        return
    record(session, **kw)


def check_endpoint(target: str, base_url: str, max_attempts: int) -> None:
    """Shared config check for the law-enforcement clients: https only (plain http on loopback for
    local stand-ins), at least one attempt."""
    if not base_url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise LeReportError(f"{target} base_url must be https (or local): {base_url!r}")
    if max_attempts < 1:
        raise LeReportError("max_attempts must be >= 1")
