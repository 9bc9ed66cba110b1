"""Local stand-in servers for NCMEC's CyberTipline API and an NCA-like JSON endpoint.

Real HTTP on 127.0.0.1 (stdlib ``http.server`` in a thread), for tests and for trying the flow
without credentials. The NCMEC stand-in validates the structure independently of the builder in
``ncmec.py`` (its own tables, taken from a public copy of NCMEC's ISPWS XSD, see
docs/law-enforcement-reports.md): required elements, sequence order, choices, ``xs:all`` flag groups,
attributes, enumerations, booleans, integers and ISO 8601 date-times; it answers like NCMEC (``<reportResponse>`` with
responseCode 0 and a reportId, 4100/4110 for invalid/malformed XML, 2000 without credentials,
5001/5101/5102 for unknown/retracted/finished reports). ``fail_next`` injects transient failures.

Limits: it checks only the elements lifeguard emits plus their documented neighbours — it is not the
XSD. Point the client at NCMEC's test environment to validate against the real schema.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Element order of the CyberTipline XSD sequences (checked against a public copy of NCMEC's ISPWS
# XSD, see docs/law-enforcement-reports.md); every element optional unless listed in _REQUIRED.
_PERSON = ["firstName", "lastName", "phone", "email", "address", "age", "dateOfBirth"]
_CONTACT = ["firstName", "lastName", "phone", "email", "address"]
_ORDER: dict[str, list[str]] = {
    "report": [
        "batchedReport", "incidentSummary", "internetDetails", "lawEnforcement", "reporter",
        "personOrUserReported", "intendedRecipient", "victim", "additionalInfo",
    ],
    "incidentSummary": [
        "incidentType", "platform", "escalateToHighPriority", "reportAnnotations",
        "incidentDateTime", "incidentDateTimeDescription",
    ],
    "webPageIncident": ["url", "additionalInfo"],
    "emailIncident": ["emailAddress", "content", "additionalInfo"],
    "chatImIncident": ["chatClient", "chatRoomName", "content", "additionalInfo"],
    "onlineGamingIncident": ["gameName", "console", "content", "additionalInfo"],
    "lawEnforcement": [
        "agencyName", "caseNumber", "officerContact", "reportedToLe",
        "servedLegalProcessDomestic", "servedLegalProcessInternational",
    ],
    "reporter": ["reportingPerson", "contactPerson", "companyTemplate", "termsOfService", "legalURL"],
    "reportingPerson": _PERSON,
    "contactPerson": _CONTACT,
    "officerContact": _CONTACT,
    "personOrUserReportedPerson": _PERSON,
    "intendedRecipientPerson": _PERSON,
    "victimPerson": _PERSON,
    "personOrUserReported": [
        "personOrUserReportedPerson", "vehicleDescription", "espIdentifier", "espService",
        "compromisedAccount", "screenName", "displayName", "profileUrl", "profileBio",
        "ipCaptureEvent", "deviceId", "thirdPartyUserReported", "priorCTReports",
        "groupIdentifier", "accountTemporarilyDisabled", "accountPermanentlyDisabled",
        "estimatedLocation", "allEmailsReported", "associatedAccount", "additionalInfo",
    ],
    "intendedRecipient": [
        "intendedRecipientPerson", "espIdentifier", "espService", "compromisedAccount",
        "screenName", "displayName", "profileUrl", "profileBio", "ipCaptureEvent", "deviceId",
        "priorCTReports", "groupIdentifier", "accountTemporarilyDisabled",
        "accountPermanentlyDisabled", "estimatedLocation", "allEmailsReported", "additionalInfo",
    ],
    "victim": [
        "victimPerson", "espIdentifier", "espService", "compromisedAccount", "screenName",
        "displayName", "profileUrl", "profileBio", "ipCaptureEvent", "deviceId", "schoolName",
        "priorCTReports", "accountTemporarilyDisabled", "accountPermanentlyDisabled",
        "estimatedLocation", "allEmailsReported", "associatedAccount", "additionalInfo",
    ],
    "ipCaptureEvent": ["ipAddress", "eventName", "dateTime", "possibleProxy", "port"],
    "deviceId": ["idType", "idValue", "eventName", "dateTime"],
    # verified / timestamp are attributes of estimatedLocation (see _ATTRS)
    "estimatedLocation": ["city", "region", "countryCode"],
    "fileDetails": [
        "reportId", "fileId", "fileName", "originalFileName", "uploadedToEspTimestamp",
        "locationOfFile", "fileViewedByEsp", "exifViewedByEsp", "publiclyAvailable",
        "fileRelevance", "potentialMeme|fileAnnotations", "industryClassification",
        "originalFileHash", "ipCaptureEvent", "deviceId", "details", "additionalInfo",
    ],
    "details": ["nameValuePair"],
    "nameValuePair": ["name", "value"],
}  # fmt: skip
#: Elements that occur at most once (everything else in a sequence may repeat where the XSD says
#: maxOccurs="unbounded"; the stand-in only enforces "once" for these).
_ONCE = {
    "incidentSummary", "lawEnforcement", "reporter", "incidentType", "platform",
    "escalateToHighPriority", "reportAnnotations", "incidentDateTime", "reportingPerson",
    "contactPerson", "legalURL", "espIdentifier", "espService", "screenName", "victimPerson",
    "personOrUserReportedPerson", "estimatedLocation", "reportId", "fileId", "originalFileName",
    "fileViewedByEsp", "exifViewedByEsp", "publiclyAvailable", "industryClassification",
    "fileAnnotations", "ipAddress", "eventName", "idType", "idValue", "city", "region",
    "countryCode", "chatClient", "chatRoomName", "name", "value", "firstName", "lastName",
}  # fmt: skip
_REQUIRED: dict[str, list[str]] = {
    # internetDetails is minOccurs=0 in the XSD, but its documentation says every report needs one
    "report": ["incidentSummary", "internetDetails", "reporter"],
    "incidentSummary": ["incidentType", "incidentDateTime"],
    "reporter": ["reportingPerson"],
    "reportingPerson": ["email"],  # required by the API documentation, not by the XSD
    "lawEnforcement": ["agencyName"],
    "ipCaptureEvent": ["ipAddress"],
    "deviceId": ["idType", "idValue"],
    "victim": ["victimPerson"],
    "fileDetails": ["reportId", "fileId"],
    "details": ["nameValuePair"],
    "nameValuePair": ["name", "value"],
}
#: ``internetDetails`` is an xs:choice: exactly one of these children.
_INCIDENT_KINDS = {
    "webPageIncident", "emailIncident", "newsgroupIncident", "chatImIncident",
    "onlineGamingIncident", "cellPhoneIncident", "nonInternetIncident", "peer2peerIncident",
}  # fmt: skip
_INCIDENT_TYPES = {
    "Child Pornography (possession, manufacture, and distribution)",
    "Child Sex Trafficking",
    "Child Sex Tourism",
    "Child Sexual Molestation",
    "Misleading Domain Name",
    "Misleading Words or Digital Images on the Internet",
    "Online Enticement of Children for Sexual Acts",
    "Unsolicited Obscene Material Sent to a Child",
}
_ENUMS: dict[str, set[str]] = {
    "incidentType": _INCIDENT_TYPES,
    "industryClassification": {"A1", "A2", "B1", "B2"},
    "eventName": {"Login", "Registration", "Purchase", "Upload", "Other", "Unknown"},
    "fileRelevance": {"Reported", "Supplemental Reported"},
}
_BOOLEANS = {
    "fileViewedByEsp", "exifViewedByEsp", "publiclyAvailable", "possibleProxy",
    "thirdPartyUserReported", "compromisedAccount", "allEmailsReported", "potentialMeme",
    "reportedToLe", "servedLegalProcessDomestic",
}  # fmt: skip
_DATETIMES = {"incidentDateTime", "dateTime", "uploadedToEspTimestamp"}
_INTEGERS = {"reportId", "priorCTReports", "port", "age"}
_COUNTRY_TAGS = {"countryCode", "country"}
#: xs:all groups of ``xs:boolean fixed="true"`` flags (any order, each at most once).
_FLAG_GROUPS: dict[str, set[str]] = {
    "fileAnnotations": {
        "animeDrawingVirtualHentai", "potentialMeme", "viral", "possibleSelfProduction",
        "physicalHarm", "violenceGore", "bestiality", "liveStreaming", "infant", "generativeAi",
    },
    "reportAnnotations": {
        "sextortion", "csamSolicitation", "minorToMinorInteraction", "spam",
        "sadisticOnlineExploitation",
    },
}  # fmt: skip
#: Allowed attributes per element and their value kinds ("bool", "datetime", a set of values, or
#: "str"); any other attribute is rejected.
_ATTRS: dict[str, dict[str, str | set[str]]] = {
    "estimatedLocation": {"verified": "bool", "timestamp": "datetime"},
    "webPageIncident": {"thirdPartyHostedContent": "bool"},
    "details": {"type": {"EXIF", "HASH"}},
    "originalFileHash": {"hashType": "str"},
    "email": {"type": {"Home", "Work", "Business", "Recovery"}, "verified": "bool",
              "verificationDate": "datetime"},
    "phone": {"type": {"Mobile", "Home", "Business", "Work", "Fax", "Internet", "Recovery"},
              "verified": "bool", "verificationDate": "datetime", "countryCallingCode": "str",
              "extension": "str"},
    "address": {"type": {"Home", "Business", "Billing", "Shipping", "Technical"}},
    "batchedReport": {"reason": {"VIRAL_POTENTIAL_MEME"}},
}  # fmt: skip
_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"
#: hashType is a free xs:string (required); the stand-in accepts the usual names.
_HASH_TYPES = {"MD5", "SHA1", "SHA256", "PhotoDNA", "PDQ", "OTHER"}


class _Invalid(Exception):
    pass


def _check_datetime(tag: str, text: str) -> None:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Invalid(f"{tag}: not an ISO 8601 date-time: {text!r}") from None
    if "T" not in text:
        raise _Invalid(f"{tag}: xs:dateTime needs a time part: {text!r}")
    if t.tzinfo is None:
        raise _Invalid(f"{tag}: date-time without a time zone: {text!r}")


def _check_attrs(el: ET.Element, here: str) -> None:
    allowed = _ATTRS.get(el.tag, {})
    for name, value in el.attrib.items():
        if name.startswith(_XSI):
            continue
        kind = allowed.get(name)
        if kind is None:
            raise _Invalid(f"{here}: unexpected attribute {name!r}")
        if kind == "bool" and value not in ("true", "false"):
            raise _Invalid(f"{here}/@{name}: {value!r} is not a boolean")
        if kind == "datetime":
            _check_datetime(f"{here}/@{name}", value)
        if isinstance(kind, set) and value not in kind:
            raise _Invalid(f"{here}/@{name}: {value!r} is not an allowed value")


def _position(order: list[str], tag: str) -> int:
    for i, slot in enumerate(order):
        if tag in slot.split("|"):
            return i
    return -1


def validate(el: ET.Element, path: str = "") -> None:
    """Validate an element tree against the stand-in's schema tables; raises ``_Invalid``."""
    here = f"{path}/{el.tag}"
    text = (el.text or "").strip()
    _check_attrs(el, here)
    if el.tag in _ENUMS and text not in _ENUMS[el.tag]:
        raise _Invalid(f"{here}: {text!r} is not an allowed value")
    if el.tag in _BOOLEANS and text not in ("true", "false"):
        raise _Invalid(f"{here}: {text!r} is not a boolean")
    if el.tag in _DATETIMES:
        _check_datetime(here, text)
    if el.tag in _INTEGERS and not text.lstrip("-").isdigit():
        raise _Invalid(f"{here}: {text!r} is not an integer")
    if el.tag in _COUNTRY_TAGS and not (len(text) == 2 and text.isupper() and text.isalnum()):
        raise _Invalid(f"{here}: {text!r} is not a two-letter country code")
    if el.tag == "dateOfBirth":
        try:
            dt.date.fromisoformat(text)
        except ValueError:
            raise _Invalid(f"{here}: not an xs:date (YYYY-MM-DD): {text!r}") from None
    if el.tag == "originalFileHash" and el.get("hashType") not in _HASH_TYPES:
        raise _Invalid(f"{here}: hashType {el.get('hashType')!r} is missing or not allowed")
    if el.tag in _FLAG_GROUPS:
        seen: set[str] = set()
        for child in el:
            if child.tag not in _FLAG_GROUPS[el.tag]:
                raise _Invalid(f"{here}: unknown annotation {child.tag!r}")
            if child.tag in seen:
                raise _Invalid(f"{here}: annotation {child.tag!r} given twice")
            if (child.text or "").strip() not in ("", "true"):
                raise _Invalid(f"{here}/{child.tag}: fixed value is 'true'")
            seen.add(child.tag)
        return
    if el.tag == "internetDetails":
        kinds = [c.tag for c in el]
        if len(kinds) != 1 or kinds[0] not in _INCIDENT_KINDS:
            raise _Invalid(f"{here}: exactly one incident kind expected, got {kinds}")
    order = _ORDER.get(el.tag)
    if order is not None:
        pos = -1
        for child in el:
            i = _position(order, child.tag)
            if i < 0:
                raise _Invalid(f"{here}: unexpected element {child.tag!r}")
            if i < pos:
                raise _Invalid(f"{here}: {child.tag!r} is out of schema order")
            if i == pos and "|" in order[i]:
                raise _Invalid(f"{here}: only one of {order[i]!r} is allowed")
            if i == pos and child.tag in _ONCE:
                raise _Invalid(f"{here}: {child.tag!r} may occur only once")
            pos = i
        present = {c.tag for c in el}
        for req in _REQUIRED.get(el.tag, []):
            if req not in present:
                raise _Invalid(f"{here}: required element {req!r} is missing")
    for child in el:
        validate(child, here)


@dataclass
class StandinReport:
    report_id: str
    xml: bytes
    files: dict[str, bytes] = field(default_factory=dict)
    file_details: dict[str, bytes] = field(default_factory=dict)
    state: str = "open"  # open | finished | retracted


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Base:
    """A server in a daemon thread; ``url`` once started. Use as a context manager."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request received
        self._fail: dict[str, list[int]] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def fail_next(self, path: str, status: int = 503, count: int = 1) -> None:
        """Answer the next ``count`` requests to ``path`` (e.g. "/submit") with ``status``; status 0
        drops the connection after reading the request (the client cannot know the outcome)."""
        with self.lock:
            self._fail.setdefault(path, []).extend([status] * count)

    def _take_failure(self, path: str) -> int | None:
        with self.lock:
            q = self._fail.get(path)
            return q.pop(0) if q else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> str:
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> _Base:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _response(code: int, description: str, **extra: str) -> bytes:
    root = ET.Element("reportResponse")
    ET.SubElement(root, "responseCode").text = str(code)
    ET.SubElement(root, "responseDescription").text = description
    for k, v in extra.items():
        ET.SubElement(root, k).text = v
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


class NcmecStandin(_Base):
    """A CyberTipline-like server: ``/ispws/{status,submit,upload,fileinfo,finish,retract}``."""

    PREFIX = "/ispws"

    def __init__(self, username: str = "esp-test", password: str = "secret") -> None:
        super().__init__()
        self._auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.reports: dict[str, StandinReport] = {}
        self._next_report = 10_000_001
        self._next_file = 1

    @property
    def base_url(self) -> str:
        return self.url + self.PREFIX

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._dispatch(b"")

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                self._dispatch(self.rfile.read(n))

            def _dispatch(self, body: bytes) -> None:
                path = self.path.split("?", 1)[0]
                with outer.lock:
                    outer.requests.append((self.command, path))
                if not path.startswith(outer.PREFIX):
                    self._send(404, _response(1210, "Resource not found"))
                    return
                op = path[len(outer.PREFIX) :]
                fail = outer._take_failure(op)
                if fail == 0:
                    self.close_connection = True
                    return
                if fail is not None:
                    self._send(fail, b"<html><body>Service Unavailable</body></html>")
                    return
                if self.headers.get("Authorization") != outer._auth:
                    self._send(401, _response(2000, "Authentication required"))
                    return
                status, answer = outer.handle(op, self.command, body, self.headers)
                self._send(status, answer)

        return H

    def handle(self, op: str, method: str, body: bytes, headers: Any) -> tuple[int, bytes]:
        if op == "/status":
            return 200, _response(0, "Success")
        if method != "POST":
            return 405, _response(4000, "Invalid request")
        if op == "/submit":
            return self._submit(body)
        if op in ("/upload", "/finish", "/retract"):
            form = _parse_multipart(headers.get("Content-Type", ""), body)
            if form is None or "id" not in form:
                return 400, _response(4200, "Malformed file submittal")
            report_id = form["id"][1].decode("utf-8", "replace")
            with self.lock:
                rep = self.reports.get(report_id)
                if rep is None:
                    return 400, _response(5001, "Report does not exist", reportId=report_id)
                if rep.state == "retracted":
                    return 400, _response(5101, "Report already retracted", reportId=report_id)
                if rep.state == "finished":
                    return 400, _response(5102, "Report already finished", reportId=report_id)
                if op == "/finish":
                    rep.state = "finished"
                    return 200, _response(0, "Success", reportId=report_id)
                if op == "/retract":
                    rep.state = "retracted"
                    return 200, _response(0, "Success", reportId=report_id)
                if "file" not in form or not form["file"][1]:
                    return 400, _response(4200, "Malformed file submittal", reportId=report_id)
                file_id = f"{self._next_file:08x}"
                self._next_file += 1
                rep.files[file_id] = form["file"][1]
                return 200, _response(0, "Success", reportId=report_id, fileId=file_id)
        if op == "/fileinfo":
            return self._fileinfo(body)
        return 404, _response(1210, "Resource not found")

    def _parse(self, body: bytes, root_tag: str) -> ET.Element | tuple[int, bytes]:
        try:
            root = ET.fromstring(body)
        except ET.ParseError as e:
            return 400, _response(4110, f"Malformed XML submittal: {e}")
        if root.tag != root_tag:
            return 400, _response(4100, f"Validation failed: root must be {root_tag}")
        try:
            validate(root)
        except _Invalid as e:
            return 400, _response(4100, f"Validation failed: {e}")
        return root

    def _submit(self, body: bytes) -> tuple[int, bytes]:
        root = self._parse(body, "report")
        if isinstance(root, tuple):
            return root
        with self.lock:
            report_id = str(self._next_report)
            self._next_report += 1
            self.reports[report_id] = StandinReport(report_id=report_id, xml=body)
        return 200, _response(0, "Success", reportId=report_id)

    def _fileinfo(self, body: bytes) -> tuple[int, bytes]:
        root = self._parse(body, "fileDetails")
        if isinstance(root, tuple):
            return root
        report_id = root.findtext("reportId") or ""
        file_id = root.findtext("fileId") or ""
        with self.lock:
            rep = self.reports.get(report_id)
            if rep is None:
                return 400, _response(5001, "Report does not exist", reportId=report_id)
            if rep.state != "open":
                return 400, _response(5102, "Report already finished", reportId=report_id)
            if file_id not in rep.files:
                return 400, _response(5002, "File does not exist", reportId=report_id)
            rep.file_details[file_id] = body
        return 200, _response(0, "Success", reportId=report_id)


def _parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]] | None:
    """``{field: (filename, bytes)}`` from a multipart/form-data body, or None if malformed."""
    if not content_type.startswith("multipart/form-data"):
        return None
    msg = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not msg.is_multipart():
        return None
    out: dict[str, tuple[str, bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            return None
        payload = part.get_payload(decode=True)
        out[name] = (part.get_filename() or "", payload if isinstance(payload, bytes) else b"")
    return out


class NcaStandin(_Base):
    """An NCA-like JSON endpoint: ``POST /api/v1/reports`` (Bearer token). Validates the package
    (schema name/version, priority, Schedule 1 sections, declaration) and records what it got."""

    def __init__(self, token: str = "nca-test-token") -> None:
        super().__init__()
        self._auth = f"Bearer {token}"
        self.received: list[dict[str, Any]] = []

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, obj: dict[str, Any]) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with outer.lock:
                    outer.requests.append(("POST", self.path))
                fail = outer._take_failure(self.path)
                if fail is not None:
                    self._send(fail, {"error": "unavailable"})
                    return
                if self.path != "/api/v1/reports":
                    self._send(404, {"error": "not found"})
                    return
                if self.headers.get("Authorization") != outer._auth:
                    self._send(401, {"error": "unauthorised"})
                    return
                try:
                    pkg = json.loads(body)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    self._send(400, {"errors": [f"not JSON: {e}"]})
                    return
                errors = nca_validate(pkg)
                if errors:
                    self._send(400, {"errors": errors})
                    return
                with outer.lock:
                    ref = f"NCA-{len(outer.received) + 1:06d}"
                    outer.received.append(pkg)
                self._send(201, {"reference": ref, "priority": pkg["priority"]["level"]})

        return H


def nca_validate(pkg: Any) -> list[str]:
    """The stand-in's checks on an NCA package (independent of ``nca.py``'s builder)."""
    if not isinstance(pkg, dict):
        return ["package must be a JSON object"]
    errs: list[str] = []
    if pkg.get("schema") != "lifeguard.nca-report" or pkg.get("schema_version") != "1.0":
        errs.append("unsupported schema/schema_version")
    for key in (
        "report_ref",
        "priority",
        "reporting_provider",
        "incident",
        "content",
        "users",
        "declaration",
    ):
        if key not in pkg:
            errs.append(f"missing section {key!r}")
    if errs:
        return errs
    pr = pkg["priority"]
    if not isinstance(pr, dict) or pr.get("level") not in (1, 2, 3) or not pr.get("reasons"):
        errs.append("priority.level must be 1, 2 or 3 with reasons")
    prov = pkg["reporting_provider"]
    if not isinstance(prov, dict) or not prov.get("name") or not prov.get("reporting_person"):
        errs.append("reporting_provider needs name and reporting_person")
    content = pkg["content"]
    if not isinstance(content, list) or not content:
        errs.append("content must be a non-empty list")
    else:
        for i, c in enumerate(content):
            if not isinstance(c, dict) or not c.get("hashes") or not c.get("detection"):
                errs.append(f"content[{i}] needs hashes and detection")
    users = pkg["users"]
    if (
        not isinstance(users, list)
        or not users
        or not all(isinstance(u, dict) and u.get("provider_user_id") for u in users)
    ):
        errs.append("users must list at least one user with provider_user_id")
    decl = pkg["declaration"]
    if not isinstance(decl, dict) or not decl.get("text") or not decl.get("declared_by"):
        errs.append("declaration needs text and declared_by")
    elif decl.get("confirmed") is not True:
        errs.append("declaration.confirmed must be true")
    return errs
