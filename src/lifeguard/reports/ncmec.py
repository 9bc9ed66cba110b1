"""NCMEC CyberTipline reports: the report XML, per-file ``fileDetails`` XML and the submission flow.

Flow (CyberTipline "ESP reporting API", XML over HTTPS, Basic auth)::

    POST {base}/submit    report XML                       -> reportId
    POST {base}/upload    multipart: id=reportId, file=... -> fileId      (per evidence file)
    POST {base}/fileinfo  fileDetails XML                  -> ok          (per evidence file)
    POST {base}/finish    multipart: id=reportId           -> ok
    POST {base}/retract   multipart: id=reportId           -> ok          (cancel an unfinished report)
    GET  {base}/status                                     -> ok          (credentials check)

Every answer is ``<reportResponse><responseCode>0</responseCode>...`` (0 = success). XML is built with
``xml.etree.ElementTree`` only (all untrusted text goes in as element text, escaped by the library).
Every request, retry and answer is recorded (``le_submission``, see ``lereports.record_submission``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import secrets
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lifeguard.errors import LifeguardError
from lifeguard.reports.lereports import (
    Contact,
    DeviceId,
    FileAnnotation,
    IpCapture,
    LeReportError,
    LeReportInput,
    Location,
    ReportAnnotation,
    ReportFile,
    Surface,
    check_endpoint,
    iso_time,
    record_submission,
    require_senior_confirmation,
)
from lifeguard.store.db import Database

TEST_BASE_URL = "https://exttest.cybertip.org/ispws"
PRODUCTION_BASE_URL = "https://report.cybertip.org/ispws"

#: responseCode values with a documented meaning (non-exhaustive).
RESPONSE_CODES = {
    0: "Success",
    1000: "Server error",
    1100: "Save failed",
    1110: "Upload failed",
    2000: "Authentication required",
    3000: "Not authorized",
    4000: "Invalid request",
    4100: "Validation failed",
    4110: "Malformed XML submittal",
    4200: "Malformed file submittal",
    5001: "Report does not exist",
    5002: "File does not exist",
    5101: "Report already retracted",
    5102: "Report already finished",
}
#: Codes worth retrying (server-side trouble); everything else non-zero is final.
TRANSIENT_CODES = frozenset({1000, 1100, 1110})
TRANSIENT_HTTP = frozenset({429, 500, 502, 503, 504})

_HASH_TYPES = {"md5": "MD5", "sha256": "SHA256"}
#: XSD ``xs:all`` groups (each tag at most once); emitted in the schema's listing order.
_REPORT_ANNOTATION_ORDER = list(ReportAnnotation)
_FILE_ANNOTATION_ORDER = list(FileAnnotation)


class NcmecError(LifeguardError):
    """NCMEC answered with an error (``response_code``), or could not be reached."""

    code = "ncmec_error"

    def __init__(
        self,
        message: str,
        *,
        response_code: int | None = None,
        http_status: int | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.response_code = response_code
        self.http_status = http_status
        self.transient = transient


# --- XML building ---------------------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def _bool(v: bool) -> str:
    return "true" if v else "false"


def _ip_event(parent: ET.Element, ip: IpCapture) -> None:
    ev = _sub(parent, "ipCaptureEvent")
    _sub(ev, "ipAddress", ip.ip)
    _sub(ev, "eventName", str(ip.event))
    if ip.time is not None:
        _sub(ev, "dateTime", iso_time(ip.time))
    _sub(ev, "possibleProxy", _bool(ip.possible_proxy))
    if ip.port is not None:
        _sub(ev, "port", str(ip.port))


def _device(parent: ET.Element, d: DeviceId) -> None:
    ev = _sub(parent, "deviceId")
    _sub(ev, "idType", d.id_type)
    _sub(ev, "idValue", d.value)
    _sub(ev, "eventName", str(d.event))
    if d.time is not None:
        _sub(ev, "dateTime", iso_time(d.time))


def _location(parent: ET.Element, loc: Location) -> None:
    """``estimatedLocation``: city, region, countryCode elements; ``verified`` (and ``timestamp``)
    are XML *attributes* in the XSD, not child elements."""
    el = _sub(parent, "estimatedLocation")
    el.set("verified", _bool(loc.verified))
    if loc.city:
        _sub(el, "city", loc.city)
    if loc.region:
        _sub(el, "region", loc.region)
    if loc.country_code:
        _sub(el, "countryCode", loc.country_code)


def _flags(parent: ET.Element, tag: str, chosen: Sequence[str], order: Sequence[str]) -> None:
    """An ``xs:all`` of ``xs:boolean fixed="true"`` flags: each chosen tag once, text ``true``."""
    if not chosen:
        return
    el = _sub(parent, tag)
    for name in order:
        if name in chosen:
            _sub(el, str(name), "true")


def _person(
    parent: ET.Element,
    tag: str,
    first: str,
    last: str,
    emails: Sequence[str],
    phones: Sequence[str] = (),
) -> None:
    """A ``person``/``contactPerson``: firstName, lastName, phone*, email*, address*, ... in order."""
    p = _sub(parent, tag)
    if first:
        _sub(p, "firstName", first)
    if last:
        _sub(p, "lastName", last)
    for ph in phones:
        _sub(p, "phone", ph)
    for e in emails:
        _sub(p, "email", e)


def _contact(parent: ET.Element, tag: str, c: Contact) -> None:
    _person(parent, tag, c.first_name, c.last_name, [c.email], [c.phone] if c.phone else [])


def build_report_element(inp: LeReportInput) -> ET.Element:
    """The ``<report>`` element, sections in schema order. Raises :class:`NotConfirmed` without a
    senior-reviewer sign-off."""
    senior = require_senior_confirmation(inp)
    root = ET.Element("report")

    summ = _sub(root, "incidentSummary")
    _sub(summ, "incidentType", str(inp.incident.type))
    _sub(summ, "platform", inp.reporter.service)
    escalate = inp.incident.escalate or (
        "Child at immediate risk" if inp.incident.child_at_immediate_risk else ""
    )
    if escalate:
        _sub(summ, "escalateToHighPriority", escalate)
    _flags(summ, "reportAnnotations", inp.incident.annotations, _REPORT_ANNOTATION_ORDER)
    _sub(summ, "incidentDateTime", iso_time(inp.incident.time))

    net = _sub(root, "internetDetails")
    s = inp.internet.surface
    if s is Surface.PUBLIC_POST:
        web = _sub(net, "webPageIncident")
        if inp.internet.url:
            _sub(web, "url", inp.internet.url)
        _sub(web, "additionalInfo", f"Public post on {inp.reporter.service}")
    else:
        chat = _sub(net, "chatImIncident")
        _sub(chat, "chatClient", inp.internet.chat_client or inp.reporter.service)
        if inp.internet.chat_room:
            _sub(chat, "chatRoomName", inp.internet.chat_room)
        note = {
            Surface.PRIVATE_MESSAGE: "Private message",
            Surface.CHAT_IM: "Chat / instant message",
            Surface.E2EE_VERIFIED_REPORT: (
                "End-to-end encrypted conversation: content disclosed by a participant through a "
                "verified (message-franked) report; the provider cannot read other messages"
            ),
        }[s]
        _sub(chat, "additionalInfo", note)

    rep = _sub(root, "reporter")
    _contact(rep, "reportingPerson", inp.reporter.reporting_person)
    if inp.reporter.contact_person is not None:
        _contact(rep, "contactPerson", inp.reporter.contact_person)
    if inp.reporter.terms_of_service:
        _sub(rep, "termsOfService", inp.reporter.terms_of_service)
    if inp.reporter.legal_url:
        _sub(rep, "legalURL", inp.reporter.legal_url)

    user = inp.reported_users[0]
    pu = _sub(root, "personOrUserReported")
    if user.emails:
        _person(pu, "personOrUserReportedPerson", "", "", user.emails)
    _sub(pu, "espIdentifier", user.esp_identifier)
    _sub(pu, "espService", inp.reporter.service)
    if user.screen_name:
        _sub(pu, "screenName", user.screen_name)
    for name in user.display_names:
        _sub(pu, "displayName", name)
    if user.profile_url:
        _sub(pu, "profileUrl", user.profile_url)
    for ip in user.ips:
        _ip_event(pu, ip)
    for d in user.devices:
        _device(pu, d)
    if user.location is not None:
        _location(pu, user.location)

    for v in inp.victims:
        vic = _sub(root, "victim")
        _sub(vic, "victimPerson")
        if v.esp_identifier:
            _sub(vic, "espIdentifier", v.esp_identifier)
        if v.screen_name:
            _sub(vic, "screenName", v.screen_name)
        if v.location is not None:
            _location(vic, v.location)
        extra = f"Estimated age band: {v.age_band}" + (f". {v.notes}" if v.notes else "")
        _sub(vic, "additionalInfo", extra)

    lines = [f"Summary: {inp.incident.summary}"]
    if inp.additional_info:
        lines.append(inp.additional_info)
    for other in inp.reported_users[1:]:
        lines.append(
            f"Also reported: user {other.esp_identifier}"
            + (f" (screen name {other.screen_name})" if other.screen_name else "")
        )
    lines.append(
        f"Confirmed by reviewer {inp.confirmed_by.reviewer} at {iso_time(inp.confirmed_by.time)}; "
        f"senior sign-off by {senior.reviewer} at {iso_time(senior.time)}. "
        f"Provider reference: {inp.case_ref}."
    )
    _sub(root, "additionalInfo", "\n".join(lines))
    return root


def build_report_xml(inp: LeReportInput) -> bytes:
    """The CyberTipline report document (UTF-8, with XML declaration)."""
    el = build_report_element(inp)
    return bytes(ET.tostring(el, encoding="utf-8", xml_declaration=True))


def build_file_details_xml(report_id: str, file_id: str, f: ReportFile) -> bytes:
    """The ``<fileDetails>`` document for one uploaded file, elements in schema order."""
    root = ET.Element("fileDetails")
    _sub(root, "reportId", report_id)
    _sub(root, "fileId", file_id)
    _sub(root, "originalFileName", f.original_name)
    _sub(root, "fileViewedByEsp", _bool(f.viewed_by_esp))
    _sub(root, "exifViewedByEsp", _bool(f.exif_viewed))
    _sub(root, "publiclyAvailable", _bool(f.publicly_available))
    _flags(root, "fileAnnotations", f.annotations, _FILE_ANNOTATION_ORDER)
    _sub(root, "industryClassification", str(f.classification))
    for name, value in f.hashes.items():
        if name in _HASH_TYPES:
            h = _sub(root, "originalFileHash", value)
            h.set("hashType", _HASH_TYPES[name])
    if f.hashes.pdq or f.matched_list:
        det = _sub(root, "details")
        det.set("type", "HASH")
        if f.hashes.pdq:
            nv = _sub(det, "nameValuePair")
            _sub(nv, "name", "PDQ")
            _sub(nv, "value", f.hashes.pdq)
        if f.matched_list:
            nv = _sub(det, "nameValuePair")
            _sub(nv, "name", "matchedHashList")
            _sub(nv, "value", f.matched_list)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


# --- responses and HTTP ---------------------------------------------------------------------


@dataclass(frozen=True)
class NcmecResponse:
    http_status: int
    response_code: int
    description: str
    report_id: str = ""
    file_id: str = ""
    body: str = ""


def parse_response(http_status: int, body: bytes) -> NcmecResponse:
    """Parse ``<reportResponse>``; a body that is not that XML raises :class:`NcmecError`."""
    text = body.decode("utf-8", "replace")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise NcmecError(
            f"unreadable NCMEC answer (HTTP {http_status}): {e}: {text[:200]!r}",
            http_status=http_status,
            transient=http_status in TRANSIENT_HTTP,
        ) from None
    code_text = root.findtext("responseCode")
    if code_text is None or not code_text.strip().lstrip("-").isdigit():
        raise NcmecError(
            f"NCMEC answer without a numeric responseCode (HTTP {http_status}): {text[:200]!r}",
            http_status=http_status,
        )
    return NcmecResponse(
        http_status=http_status,
        response_code=int(code_text),
        description=root.findtext("responseDescription") or "",
        report_id=(root.findtext("reportId") or "").strip(),
        file_id=(root.findtext("fileId") or "").strip(),
        body=text,
    )


def multipart(
    fields: Sequence[tuple[str, str]], files: Sequence[tuple[str, str, bytes]]
) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body. Field names and file names are ours (never user text)."""
    boundary = "lifeguard-" + secrets.token_hex(16)
    out = bytearray()
    for name, value in fields:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    for name, filename, data in files:
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


@dataclass(frozen=True)
class NcmecConfig:
    """Where and how to reach the CyberTipline API. ``base_url`` defaults to NCMEC's *test*
    environment; production must be chosen explicitly."""

    username: str
    password: str
    base_url: str = TEST_BASE_URL
    timeout_s: float = 60.0
    max_attempts: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        check_endpoint("NCMEC", self.base_url, self.max_attempts)


@dataclass
class NcmecResult:
    report_id: str
    file_ids: list[str] = field(default_factory=list)
    finished: bool = False


#: Requests whose repetition cannot create a second object on NCMEC's side.
_IDEMPOTENT = frozenset({"fileinfo", "finish", "retract", "status"})


class NcmecClient:
    """Runs the CyberTipline flow, recording every request and retry in ``le_submission``.

    Retries: HTTP 429/5xx and responseCodes 1000/1100/1110 are retried with exponential back-off
    (``backoff_s`` doubling, capped). A connection failure *before* a response is retried only for
    idempotent requests (fileinfo, finish, retract, status): a lost answer to ``/submit`` or
    ``/upload`` could mean NCMEC created the object, so that error is raised (never a silent
    duplicate). ``finish``/``retract`` treat 5102/5101 (already finished/retracted) as success.
    """

    def __init__(
        self,
        config: NcmecConfig,
        db: Database | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.db = db
        self._sleep = sleep
        token = base64.b64encode(f"{config.username}:{config.password}".encode()).decode()
        self._auth = f"Basic {token}"

    # -- low level
    def _record(self, **kw: object) -> None:
        if self.db is None:
            return
        with self.db.session() as s:
            record_submission(s, target="ncmec", **kw)  # type: ignore[arg-type]

    def request(
        self,
        kind: str,
        *,
        case_ref: str,
        actor: str,
        body: bytes | None = None,
        content_type: str = "",
        ok_codes: frozenset[int] = frozenset({0}),
    ) -> NcmecResponse:
        url = self.config.base_url.rstrip("/") + "/" + kind
        method = "GET" if body is None else "POST"
        last: NcmecError | None = None
        for attempt in range(1, self.config.max_attempts + 1):
            req = urllib.request.Request(url, data=body, method=method)
            req.add_header("Authorization", self._auth)
            if content_type:
                req.add_header("Content-Type", content_type)
            status: int | None = None
            raw = b""
            try:
                with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:
                    status, raw = int(resp.status), resp.read()
            except urllib.error.HTTPError as e:
                status, raw = int(e.code), e.read()
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                reason = getattr(e, "reason", e)
                self._record(
                    kind=kind, case_ref=case_ref, attempt=attempt, http_status=None,
                    response_code=None, response_body="", error=f"connection: {reason}",
                    actor=actor,
                )  # fmt: skip
                last = NcmecError(f"NCMEC {kind}: connection failed: {reason}", transient=True)
                if kind not in _IDEMPOTENT and not _refused(e):
                    raise NcmecError(
                        f"NCMEC {kind}: connection lost, outcome unknown (not retried): {reason}",
                        transient=True,
                    ) from None
                self._backoff(attempt)
                continue
            try:
                parsed = parse_response(status, raw)
            except NcmecError as e:
                self._record(
                    kind=kind, case_ref=case_ref, attempt=attempt, http_status=status,
                    response_code=None, response_body=raw.decode("utf-8", "replace"),
                    error=e.message, actor=actor,
                )  # fmt: skip
                if status in TRANSIENT_HTTP:
                    last = e
                    self._backoff(attempt)
                    continue
                raise
            self._record(
                kind=kind, case_ref=case_ref, attempt=attempt, http_status=status,
                response_code=parsed.response_code, response_body=parsed.body,
                report_id=parsed.report_id, file_id=parsed.file_id,
                error="" if parsed.response_code in ok_codes else parsed.description,
                actor=actor,
            )  # fmt: skip
            if parsed.response_code in ok_codes:
                return parsed
            transient = status in TRANSIENT_HTTP or parsed.response_code in TRANSIENT_CODES
            err = NcmecError(
                f"NCMEC {kind}: responseCode {parsed.response_code} "
                f"({parsed.description or RESPONSE_CODES.get(parsed.response_code, '?')})",
                response_code=parsed.response_code,
                http_status=status,
                transient=transient,
            )
            if not transient:
                raise err
            last = err
            self._backoff(attempt)
        assert last is not None
        raise NcmecError(
            f"{last.message} (gave up after {self.config.max_attempts} attempts)",
            response_code=last.response_code,
            http_status=last.http_status,
            transient=True,
        )

    def _backoff(self, attempt: int) -> None:
        if attempt < self.config.max_attempts:
            self._sleep(min(self.config.backoff_s * 2 ** (attempt - 1), self.config.backoff_max_s))

    # -- API calls
    def status(self, *, actor: str = "system") -> NcmecResponse:
        return self.request("status", case_ref="-", actor=actor)

    def submit(self, report_xml: bytes, *, case_ref: str, actor: str) -> str:
        r = self.request(
            "submit", case_ref=case_ref, actor=actor, body=report_xml,
            content_type="text/xml; charset=utf-8",
        )  # fmt: skip
        if not r.report_id:
            raise NcmecError("NCMEC submit: success without a reportId", response_code=0)
        return r.report_id

    def upload(
        self, report_id: str, upload_name: str, data: bytes, *, case_ref: str, actor: str
    ) -> str:
        body, ctype = multipart([("id", report_id)], [("file", upload_name, data)])
        r = self.request("upload", case_ref=case_ref, actor=actor, body=body, content_type=ctype)
        if not r.file_id:
            raise NcmecError("NCMEC upload: success without a fileId", response_code=0)
        return r.file_id

    def fileinfo(self, details_xml: bytes, *, case_ref: str, actor: str) -> None:
        self.request(
            "fileinfo", case_ref=case_ref, actor=actor, body=details_xml,
            content_type="text/xml; charset=utf-8",
        )  # fmt: skip

    def finish(self, report_id: str, *, case_ref: str, actor: str) -> None:
        body, ctype = multipart([("id", report_id)], [])
        self.request(
            "finish", case_ref=case_ref, actor=actor, body=body, content_type=ctype,
            ok_codes=frozenset({0, 5102}),
        )  # fmt: skip

    def retract(self, report_id: str, *, case_ref: str, actor: str) -> None:
        body, ctype = multipart([("id", report_id)], [])
        self.request(
            "retract", case_ref=case_ref, actor=actor, body=body, content_type=ctype,
            ok_codes=frozenset({0, 5101}),
        )  # fmt: skip

    def submit_report(self, inp: LeReportInput, *, actor: str) -> NcmecResult:
        """The whole flow for one confirmed case. If a step after ``/submit`` fails, the open report
        is retracted (recorded too) and the error raised, so no half-filed report is left open."""
        missing = [f.original_name for f in inp.files if f.content is None]
        if missing:
            raise LeReportError(f"NCMEC reports need every file's content; missing: {missing}")
        report_xml = build_report_xml(inp)  # raises NotConfirmed first
        report_id = self.submit(report_xml, case_ref=inp.case_ref, actor=actor)
        result = NcmecResult(report_id=report_id)
        try:
            for n, f in enumerate(inp.files, 1):
                assert f.content is not None
                ext = _safe_ext(f.original_name)
                file_id = self.upload(
                    report_id, f"evidence-{n}{ext}", f.content, case_ref=inp.case_ref, actor=actor
                )
                result.file_ids.append(file_id)
                self.fileinfo(
                    build_file_details_xml(report_id, file_id, f),
                    case_ref=inp.case_ref,
                    actor=actor,
                )
            self.finish(report_id, case_ref=inp.case_ref, actor=actor)
        except Exception:
            with contextlib.suppress(NcmecError):  # recorded; the original error matters more
                self.retract(report_id, case_ref=inp.case_ref, actor=actor)
            raise
        result.finished = True
        return result


def _refused(e: BaseException) -> bool:
    """True when the request certainly never reached the server (connection refused)."""
    reason = getattr(e, "reason", e)
    return isinstance(reason, ConnectionRefusedError)


def _safe_ext(name: str) -> str:
    dot = name.rfind(".")
    ext = name[dot:].lower() if dot > 0 else ""
    return ext if 1 < len(ext) <= 6 and ext[1:].isalnum() else ""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
