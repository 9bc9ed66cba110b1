"""NCMEC CyberTipline: report XML, the submit/upload/fileinfo/finish flow over real HTTP against the
local stand-in, retries and the recorded submissions. Evidence bytes are a benign Kodak photo."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from conftest import PHOTOS
from lifeguard.reports.le_models import LeSubmission
from lifeguard.reports.lereports import (
    Confirmation,
    Contact,
    DeviceId,
    FileAnnotation,
    FileHashes,
    Incident,
    IncidentType,
    IndustryClassification,
    InternetDetails,
    IpCapture,
    IpEvent,
    LeReportError,
    LeReportInput,
    Location,
    NotConfirmed,
    ReportAnnotation,
    ReportedUser,
    Reporter,
    ReportFile,
    Surface,
    Victim,
)
from lifeguard.reports.ncmec import (
    NcmecClient,
    NcmecConfig,
    NcmecError,
    build_file_details_xml,
    build_report_xml,
)
from lifeguard.reports.standin import NcmecStandin
from lifeguard.reports.standin import _Invalid as StandinInvalid
from lifeguard.reports.standin import validate as standin_validate
from lifeguard.store.db import Database

T0 = dt.datetime(2026, 11, 20, 14, 30, tzinfo=dt.UTC)
KODAK = (PHOTOS / "kodak" / "01.png").read_bytes()


def make_input(*, senior: bool = True, surface: Surface = Surface.PUBLIC_POST) -> LeReportInput:
    md5 = hashlib.md5(KODAK).hexdigest()
    sha = hashlib.sha256(KODAK).hexdigest()
    return LeReportInput(
        case_ref="case-42",
        incident=Incident(
            type=IncidentType.CHILD_PORNOGRAPHY,
            time=T0,
            summary="Hash match on upload <b>&amp; 'quoted'</b>",  # markup must be escaped
        ),
        reporter=Reporter(
            company="Example Ltd",
            service="ExampleApp",
            reporting_person=Contact("Ada", "Lovelace", "trust@example.com"),
            contact_person=Contact("Law", "Enforcement", "le-response@example.com"),
            legal_url="https://example.com/legal",
        ),
        reported_users=(
            ReportedUser(
                esp_identifier="u-1001",
                screen_name="someone",
                display_names=("Some One",),
                emails=("someone@example.net",),
                ips=(IpCapture("203.0.113.7", IpEvent.UPLOAD, T0, port=443),),
                devices=(DeviceId("IMEI", "490154203237518", IpEvent.LOGIN, T0),),
                location=Location(city="Leeds", country_code="GB"),
            ),
            ReportedUser(esp_identifier="u-2002", screen_name="other"),
        ),
        files=(
            ReportFile(
                original_name="IMG_0001.png",
                hashes=FileHashes(md5=md5, sha256=sha, pdq="a" * 64),
                classification=IndustryClassification.A1,
                viewed_by_esp=True,
                annotations=(FileAnnotation.VIRAL,),
                matched_list="NCMEC_HASHES",
                content=KODAK,
            ),
        ),
        internet=InternetDetails(surface=surface, url="https://example.com/p/1"),
        confirmed_by=Confirmation("rev-a", "reviewer", T0 + dt.timedelta(hours=1)),
        senior_confirmation=(
            Confirmation("senior-b", "senior_reviewer", T0 + dt.timedelta(hours=2))
            if senior
            else None
        ),
        victims=(Victim(esp_identifier="u-3003"),),
    )


@pytest.fixture
def standin() -> Iterator[NcmecStandin]:
    s = NcmecStandin(username="esp", password="pw")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def client(standin: NcmecStandin, db: Database | None, **kw: object) -> NcmecClient:
    sleeps: list[float] = []
    cfg = NcmecConfig(username="esp", password="pw", base_url=standin.base_url, **kw)  # type: ignore[arg-type]
    c = NcmecClient(cfg, db, sleep=sleeps.append)
    c.sleeps = sleeps  # type: ignore[attr-defined]
    return c


def test_report_xml_schema_order_and_escaping() -> None:
    xml = build_report_xml(make_input())
    root = ET.fromstring(xml)
    assert [c.tag for c in root] == [
        "incidentSummary",
        "internetDetails",
        "reporter",
        "personOrUserReported",
        "victim",
        "additionalInfo",
    ]
    assert root.findtext("incidentSummary/incidentDateTime") == "2026-11-20T14:30:00Z"
    assert root.findtext("personOrUserReported/espIdentifier") == "u-1001"
    assert root.findtext("personOrUserReported/ipCaptureEvent/ipAddress") == "203.0.113.7"
    assert [c.tag for c in root.find("personOrUserReported")][:3] == [  # type: ignore[union-attr]
        "personOrUserReportedPerson",
        "espIdentifier",
        "espService",
    ]
    # untrusted text is escaped by the library and round-trips exactly
    info = root.findtext("additionalInfo") or ""
    assert "<b>&amp; 'quoted'</b>" in info
    assert b"<b>" not in xml
    assert "u-2002" in info  # second reported user carried in additionalInfo
    assert "senior-b" in info


def test_e2ee_surface_maps_to_chat_incident() -> None:
    root = ET.fromstring(build_report_xml(make_input(surface=Surface.E2EE_VERIFIED_REPORT)))
    assert root.find("internetDetails/webPageIncident") is None
    assert "verified" in (root.findtext("internetDetails/chatImIncident/additionalInfo") or "")


def test_file_details_xml() -> None:
    f = make_input().files[0]
    root = ET.fromstring(build_file_details_xml("123", "f1", f))
    tags = [c.tag for c in root]
    assert tags.index("reportId") < tags.index("fileId") < tags.index("industryClassification")
    hashes = {h.get("hashType"): h.text for h in root.findall("originalFileHash")}
    assert hashes == {"MD5": f.hashes.md5, "SHA256": f.hashes.sha256}
    assert root.findtext("industryClassification") == "A1"
    assert root.find("fileAnnotations/viral") is not None
    assert root.findtext("fileViewedByEsp") == "true"


def test_no_senior_confirmation_raises() -> None:
    with pytest.raises(NotConfirmed, match="no senior"):
        build_report_xml(make_input(senior=False))
    inp = make_input()
    same = dataclasses.replace(
        inp,
        senior_confirmation=Confirmation("rev-a", "senior_reviewer", T0 + dt.timedelta(hours=3)),
    )
    with pytest.raises(NotConfirmed, match="confirming reviewer"):
        build_report_xml(same)
    junior = dataclasses.replace(
        inp, senior_confirmation=Confirmation("rev-c", "reviewer", T0 + dt.timedelta(hours=3))
    )
    with pytest.raises(NotConfirmed, match="role reviewer"):
        build_report_xml(junior)
    early = dataclasses.replace(
        inp, senior_confirmation=Confirmation("senior-b", "senior_reviewer", T0)
    )
    with pytest.raises(NotConfirmed, match="precedes"):
        build_report_xml(early)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: FileHashes(md5="xyz"), "md5 must be 32"),
        (lambda: FileHashes(), "at least one hash"),
        (lambda: IpCapture("999.1.1.1"), "not an IP address"),
        (lambda: Contact("a", "b", "not-an-email"), "not an email"),
        (lambda: Location(country_code="gbr"), "alpha-2"),
        (
            lambda: Incident(IncidentType.CHILD_PORNOGRAPHY, dt.datetime(2026, 1, 1), "s"),
            "timezone-aware",
        ),
    ],
)
def test_invalid_input_rejected(make: object, match: str) -> None:
    with pytest.raises(LeReportError, match=match):
        make()  # type: ignore[operator]


def test_full_flow_against_standin(standin: NcmecStandin, db: Database) -> None:
    c = client(standin, db)
    assert c.status().response_code == 0
    res = c.submit_report(make_input(), actor="senior-b")
    assert res.finished and len(res.file_ids) == 1
    rep = standin.reports[res.report_id]
    assert rep.state == "finished"
    assert rep.files[res.file_ids[0]] == KODAK
    assert res.file_ids[0] in rep.file_details
    assert [p for _, p in standin.requests] == [
        "/ispws/status",
        "/ispws/submit",
        "/ispws/upload",
        "/ispws/fileinfo",
        "/ispws/finish",
    ]
    with db.read_session() as s:
        rows = (
            s.execute(
                select(LeSubmission)
                .where(LeSubmission.case_ref == "case-42")
                .order_by(LeSubmission.id)
            )
            .scalars()
            .all()
        )
    assert [r.kind for r in rows] == ["submit", "upload", "fileinfo", "finish"]
    assert all(r.response_code == 0 and r.http_status == 200 for r in rows)
    assert rows[0].report_id == res.report_id
    assert rows[1].file_id == res.file_ids[0]
    assert "<responseCode>0</responseCode>" in rows[0].response_snippet


def test_invalid_report_rejected_with_error(standin: NcmecStandin, db: Database) -> None:
    c = client(standin, db)
    # out of schema order: reporter before incidentSummary
    bad = (
        b"<report><reporter><reportingPerson><email>a@b.cc</email></reportingPerson></reporter>"
        b"<incidentSummary><incidentType>Child Sex Tourism</incidentType>"
        b"<incidentDateTime>2026-11-20T14:30:00Z</incidentDateTime></incidentSummary></report>"
    )
    with pytest.raises(NcmecError, match="4100") as ei:
        c.submit(bad, case_ref="case-bad", actor="x")
    assert ei.value.response_code == 4100 and not ei.value.transient
    bad_enum = build_report_xml(make_input()).replace(b"Child Pornography", b"Something Else")
    with pytest.raises(NcmecError, match="not an allowed value"):
        c.submit(bad_enum, case_ref="case-bad", actor="x")
    bad_date = build_report_xml(make_input()).replace(b"2026-11-20T14:30:00Z", b"20/11/2026")
    with pytest.raises(NcmecError, match="ISO 8601"):
        c.submit(bad_date, case_ref="case-bad", actor="x")
    with pytest.raises(NcmecError, match="4110"):
        c.submit(b"<report><unclosed>", case_ref="case-bad", actor="x")
    assert standin.reports == {}  # nothing accepted
    with db.read_session() as s:
        rows = (
            s.execute(select(LeSubmission).where(LeSubmission.case_ref == "case-bad"))
            .scalars()
            .all()
        )
    assert [r.response_code for r in rows] == [4100, 4100, 4100, 4110]
    assert all(r.attempt == 1 and r.error for r in rows)  # validation errors are not retried


def test_transient_503_retried_with_backoff(standin: NcmecStandin, db: Database) -> None:
    c = client(standin, db, backoff_s=0.5)
    standin.fail_next("/submit", 503, count=2)
    standin.fail_next("/finish", 502, count=1)
    res = c.submit_report(make_input(), actor="senior-b")
    assert res.finished
    assert c.sleeps == [0.5, 1.0, 0.5]  # type: ignore[attr-defined]
    assert len(standin.reports) == 1  # retries did not create duplicate reports
    with db.read_session() as s:
        rows = (
            s.execute(
                select(LeSubmission).where(LeSubmission.kind == "submit").order_by(LeSubmission.id)
            )
            .scalars()
            .all()
        )
    assert [(r.attempt, r.http_status) for r in rows] == [(1, 503), (2, 503), (3, 200)]
    assert rows[-1].report_id == res.report_id


def test_gives_up_after_max_attempts(standin: NcmecStandin) -> None:
    c = client(standin, None, max_attempts=2)
    standin.fail_next("/submit", 503, count=5)
    with pytest.raises(NcmecError, match="gave up after 2 attempts") as ei:
        c.submit_report(make_input(), actor="x")
    assert ei.value.transient


def test_failure_after_submit_retracts(standin: NcmecStandin, db: Database) -> None:
    c = client(standin, db, max_attempts=1)
    standin.fail_next("/upload", 503, count=1)
    with pytest.raises(NcmecError):
        c.submit_report(make_input(), actor="x")
    (rep,) = standin.reports.values()
    assert rep.state == "retracted"
    with db.read_session() as s:
        kinds = [
            r.kind for r in s.execute(select(LeSubmission).order_by(LeSubmission.id)).scalars()
        ]
    assert kinds == ["submit", "upload", "retract"]


def test_wrong_credentials(standin: NcmecStandin) -> None:
    cfg = NcmecConfig(username="esp", password="wrong", base_url=standin.base_url)
    with pytest.raises(NcmecError, match="2000"):
        NcmecClient(cfg).status()


def test_not_confirmed_sends_nothing(standin: NcmecStandin) -> None:
    with pytest.raises(NotConfirmed):
        client(standin, None).submit_report(make_input(senior=False), actor="x")
    assert standin.requests == []


def test_production_url_must_be_https() -> None:
    with pytest.raises(LeReportError, match="https"):
        NcmecConfig(username="a", password="b", base_url="http://report.example.org/ispws")


def test_lost_answer_to_submit_is_not_retried(standin: NcmecStandin, db: Database) -> None:
    c = client(standin, db)
    standin.fail_next("/submit", 0)  # connection dropped: NCMEC may or may not have the report
    with pytest.raises(NcmecError, match="outcome unknown"):
        c.submit_report(make_input(), actor="x")
    assert [p for _, p in standin.requests] == ["/ispws/submit"]
    with db.read_session() as s:
        (row,) = s.execute(select(LeSubmission)).scalars().all()
    assert row.http_status is None and row.error.startswith("connection")


def test_lost_answer_to_finish_is_retried(standin: NcmecStandin) -> None:
    c = client(standin, None)
    standin.fail_next("/finish", 0)
    res = c.submit_report(make_input(), actor="x")
    assert res.finished and standin.reports[res.report_id].state == "finished"
    assert [p for _, p in standin.requests].count("/ispws/finish") == 2


def test_refused_connection_retried_then_gives_up(db: Database) -> None:
    import socket

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = NcmecConfig("esp", "pw", base_url=f"http://127.0.0.1:{port}/ispws", max_attempts=3)
    c = NcmecClient(cfg, db, sleep=lambda _: None)
    with pytest.raises(NcmecError, match="gave up after 3 attempts"):
        c.submit(b"<report/>", case_ref="case-r", actor="x")
    with db.read_session() as s:
        rows = s.execute(select(LeSubmission).order_by(LeSubmission.id)).scalars().all()
    assert [r.attempt for r in rows] == [1, 2, 3]


def test_submissions_are_audited(standin: NcmecStandin, db: Database) -> None:
    from lifeguard.reports.models import AuditRecord

    client(standin, db).submit_report(make_input(), actor="senior-b")
    with db.read_session() as s:
        actions = [
            a.action
            for a in s.execute(select(AuditRecord).order_by(AuditRecord.seq)).scalars()
            if a.subject_type == "le_report"
        ]
    assert actions == [
        "le_report.ncmec.submit",
        "le_report.ncmec.upload",
        "le_report.ncmec.fileinfo",
        "le_report.ncmec.finish",
    ]


# --- cross-checked against NCMEC's ISPWS XSD (see docs/law-enforcement-reports.md) -------------

XSD_INCIDENT_TYPES = {
    "Child Pornography (possession, manufacture, and distribution)",
    "Child Sex Trafficking",
    "Child Sex Tourism",
    "Child Sexual Molestation",
    "Misleading Domain Name",
    "Misleading Words or Digital Images on the Internet",
    "Online Enticement of Children for Sexual Acts",
    "Unsolicited Obscene Material Sent to a Child",
}


def annotated_input() -> LeReportInput:
    inp = make_input()
    return dataclasses.replace(
        inp,
        incident=dataclasses.replace(
            inp.incident,
            type=IncidentType.ONLINE_ENTICEMENT,
            escalate="Threats to a child, payment demanded",
            annotations=(ReportAnnotation.SEXTORTION, ReportAnnotation.CSAM_SOLICITATION),
        ),
        reporter=dataclasses.replace(
            inp.reporter,
            reporting_person=Contact("Ada", "Lovelace", "trust@example.com", "+44 20 7946 0000"),
        ),
    )


def test_incident_type_values_match_xsd_enumeration() -> None:
    assert {str(t) for t in IncidentType} == XSD_INCIDENT_TYPES
    assert {str(c) for c in IndustryClassification} == {"A1", "A2", "B1", "B2"}
    assert {str(e) for e in IpEvent} == {
        "Login", "Registration", "Purchase", "Upload", "Other", "Unknown",
    }  # fmt: skip


def test_incident_summary_sequence_and_report_annotations() -> None:
    root = ET.fromstring(build_report_xml(annotated_input()))
    summ = root.find("incidentSummary")
    assert summ is not None
    assert [c.tag for c in summ] == [
        "incidentType",
        "platform",
        "escalateToHighPriority",
        "reportAnnotations",
        "incidentDateTime",
    ]
    assert summ.findtext("incidentType") == "Online Enticement of Children for Sexual Acts"
    assert summ.findtext("platform") == "ExampleApp"
    ann = summ.find("reportAnnotations")
    assert ann is not None
    # xs:all of xs:boolean fixed="true": each flag once, value true, schema listing order
    assert [(c.tag, c.text) for c in ann] == [("sextortion", "true"), ("csamSolicitation", "true")]
    # no annotations -> no empty reportAnnotations element
    plain = ET.fromstring(build_report_xml(make_input()))
    assert plain.find("incidentSummary/reportAnnotations") is None


def test_reporter_uses_legalURL_and_person_sequence() -> None:
    root = ET.fromstring(build_report_xml(annotated_input()))
    rep = root.find("reporter")
    assert rep is not None
    assert [c.tag for c in rep] == ["reportingPerson", "contactPerson", "legalURL"]
    assert rep.find("legalUrl") is None
    assert rep.findtext("legalURL") == "https://example.com/legal"
    assert [c.tag for c in rep.find("reportingPerson")] == [  # type: ignore[union-attr]
        "firstName",
        "lastName",
        "phone",
        "email",
    ]


def test_estimated_location_verified_is_an_attribute() -> None:
    root = ET.fromstring(build_report_xml(make_input()))
    loc = root.find("personOrUserReported/estimatedLocation")
    assert loc is not None
    assert loc.get("verified") == "false"
    assert loc.find("verified") is None
    assert [c.tag for c in loc] == ["city", "countryCode"]


def test_file_details_hashes_annotations_and_details() -> None:
    f = dataclasses.replace(
        make_input().files[0],
        # given out of schema order and with a duplicate: emitted once each, in XSD order
        annotations=(FileAnnotation.VIRAL, FileAnnotation.POTENTIAL_MEME, FileAnnotation.VIRAL),
    )
    root = ET.fromstring(build_file_details_xml("10000001", "f1", f))
    assert [c.tag for c in root] == [
        "reportId",
        "fileId",
        "originalFileName",
        "fileViewedByEsp",
        "exifViewedByEsp",
        "publiclyAvailable",
        "fileAnnotations",
        "industryClassification",
        "originalFileHash",
        "originalFileHash",
        "details",
    ]
    ann = root.find("fileAnnotations")
    assert [(c.tag, c.text) for c in ann] == [  # type: ignore[union-attr]
        ("potentialMeme", "true"),
        ("viral", "true"),
    ]
    for h in root.findall("originalFileHash"):
        assert h.get("hashType") in {"MD5", "SHA256"} and h.text and not list(h)
    det = root.find("details")
    assert det is not None and det.get("type") == "HASH"
    pairs = [(p.findtext("name"), p.findtext("value")) for p in det.findall("nameValuePair")]
    assert pairs == [("PDQ", "a" * 64), ("matchedHashList", "NCMEC_HASHES")]
    assert all(p.attrib == {} for p in det.findall("nameValuePair"))
    standin_validate(root)  # the stand-in accepts it


def test_standin_accepts_our_documents() -> None:
    for inp in (make_input(), annotated_input(), make_input(surface=Surface.CHAT_IM)):
        standin_validate(ET.fromstring(build_report_xml(inp)))


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (b"legalURL>", b"legalUrl>", "unexpected element 'legalUrl'"),
        (b"Sexual Acts", b"Sexual Act", "not an allowed value"),
        (b"platform>", b"platformName>", "unexpected element 'platformName'"),
        (b"<sextortion>true", b"<sextortion>false", "fixed value"),
        (b"<csamSolicitation>true</csamSolicitation>", b"<sextortion />", "given twice"),
        (b'verified="false"', b'verified="no"', "not a boolean"),
        (b"2026-11-20T14:30:00Z</incidentDateTime>", b"2026-11-20</incidentDateTime>", "time"),
    ],
)
def test_standin_rejects_xsd_violations(old: bytes, new: bytes, match: str) -> None:
    xml = build_report_xml(annotated_input())
    assert old in xml, old
    standin_validate(ET.fromstring(xml))  # the unmodified document is accepted
    with pytest.raises(StandinInvalid, match=match):
        standin_validate(ET.fromstring(xml.replace(old, new)))


def test_standin_rejects_structure_errors() -> None:
    inp = annotated_input()
    # verified as a child element of estimatedLocation (the old layout)
    root = ET.fromstring(build_report_xml(inp))
    loc = root.find("personOrUserReported/estimatedLocation")
    assert loc is not None
    ET.SubElement(loc, "verified").text = "false"
    with pytest.raises(StandinInvalid, match="unexpected element 'verified'"):
        standin_validate(root)
    # internetDetails is a choice: exactly one incident kind
    root = ET.fromstring(build_report_xml(inp))
    net = root.find("internetDetails")
    assert net is not None
    ET.SubElement(net, "chatImIncident")
    with pytest.raises(StandinInvalid, match="exactly one incident kind"):
        standin_validate(root)
    # platform after escalateToHighPriority is out of sequence order
    root = ET.fromstring(build_report_xml(inp))
    summ = root.find("incidentSummary")
    assert summ is not None
    plat = summ.find("platform")
    assert plat is not None
    summ.remove(plat)
    summ.insert(2, plat)
    with pytest.raises(StandinInvalid, match="out of schema order"):
        standin_validate(root)
    # unknown attribute (e.g. type on nameValuePair instead of details) and bad details type
    fd = ET.fromstring(build_file_details_xml("10000001", "f1", inp.files[0]))
    pair = fd.find("details/nameValuePair")
    assert pair is not None
    pair.set("type", "HASH")
    with pytest.raises(StandinInvalid, match="unexpected attribute 'type'"):
        standin_validate(fd)
    fd = ET.fromstring(build_file_details_xml("10000001", "f1", inp.files[0]))
    fd.find("details").set("type", "MD5")  # type: ignore[union-attr]
    with pytest.raises(StandinInvalid, match="not an allowed value"):
        standin_validate(fd)
    # originalFileHash without its required hashType attribute
    fd = ET.fromstring(build_file_details_xml("10000001", "f1", inp.files[0]))
    del fd.find("originalFileHash").attrib["hashType"]  # type: ignore[union-attr]
    with pytest.raises(StandinInvalid, match="hashType"):
        standin_validate(fd)
    # potentialMeme (fileDetails level) and fileAnnotations are an xs:choice
    fd = ET.fromstring(build_file_details_xml("10000001", "f1", inp.files[0]))
    tags = [c.tag for c in fd]
    fd.insert(tags.index("fileAnnotations"), ET.Element("potentialMeme"))
    fd[tags.index("fileAnnotations")].text = "true"
    with pytest.raises(StandinInvalid, match="only one of"):
        standin_validate(fd)
    # reportId is xs:long
    fd = ET.fromstring(build_file_details_xml("r-1", "f1", inp.files[0]))
    with pytest.raises(StandinInvalid, match="not an integer"):
        standin_validate(fd)


def test_annotated_report_full_flow(standin: NcmecStandin) -> None:
    res = client(standin, None).submit_report(annotated_input(), actor="senior-b")
    assert res.finished
    stored = ET.fromstring(standin.reports[res.report_id].xml)
    assert stored.find("incidentSummary/reportAnnotations/sextortion") is not None
