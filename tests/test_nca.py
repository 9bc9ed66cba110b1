"""UK NCA reports: priority rule, the Schedule 1 package, JSON export, NCMEC-reported content and
submission over real HTTP to the local NCA-like stand-in (recorded and audited)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from lifeguard.reports.audit import AuditRecord
from lifeguard.reports.le_models import LeSubmission
from lifeguard.reports.lereports import (
    FileAnnotation,
    Incident,
    IncidentType,
    LeReportError,
    LeReportInput,
    NotConfirmed,
    Victim,
)
from lifeguard.reports.nca import (
    SCHEMA,
    SCHEMA_VERSION,
    NcaClient,
    NcaConfig,
    NcaError,
    assess_priority,
    build_nca_package,
    export_json,
    outstanding_content,
)
from lifeguard.reports.standin import NcaStandin, nca_validate
from lifeguard.store.db import Database
from test_ncmec import T0, make_input


def plain(**incident: object) -> LeReportInput:
    """A hash-match case with no victim and no risk flags (priority 3 unless changed)."""
    inp = make_input()
    inc = dataclasses.replace(inp.incident, **incident)  # type: ignore[arg-type]
    f = dataclasses.replace(inp.files[0], annotations=())
    return dataclasses.replace(inp, incident=inc, victims=(), files=(f,))


@pytest.fixture
def standin() -> Iterator[NcaStandin]:
    s = NcaStandin(token="tok")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def nca_client(standin: NcaStandin, db: Database | None, **kw: object) -> NcaClient:
    sleeps: list[float] = []
    cfg = NcaConfig(base_url=standin.url, token="tok", **kw)  # type: ignore[arg-type]
    c = NcaClient(cfg, db, sleep=sleeps.append)
    c.sleeps = sleeps  # type: ignore[attr-defined]
    return c


def test_priority_3_known_material() -> None:
    p = assess_priority(plain())
    assert p.level == 3 and p.reasons


def test_priority_1_immediate_risk_and_escalation() -> None:
    assert assess_priority(plain(child_at_immediate_risk=True)).level == 1
    p = assess_priority(plain(escalate="meeting arranged for tonight"))
    assert p.level == 1 and any("meeting arranged" in r for r in p.reasons)


@pytest.mark.parametrize(
    "change",
    [
        lambda i: dataclasses.replace(
            i, incident=dataclasses.replace(i.incident, ongoing_abuse=True)
        ),
        lambda i: dataclasses.replace(
            i, incident=dataclasses.replace(i.incident, type=IncidentType.ONLINE_ENTICEMENT)
        ),
        lambda i: dataclasses.replace(i, victims=(Victim(esp_identifier="u-9"),)),
        lambda i: dataclasses.replace(
            i,
            files=(
                dataclasses.replace(
                    i.files[0], annotations=(FileAnnotation.POSSIBLE_SELF_PRODUCTION,)
                ),
            ),
        ),
    ],
)
def test_priority_2_rules(change: object) -> None:
    p = assess_priority(change(plain()))  # type: ignore[operator]
    assert p.level == 2 and len(p.reasons) == 1


def test_victim_without_identifier_is_not_priority_2() -> None:
    inp = dataclasses.replace(plain(), victims=(Victim(),))
    assert assess_priority(inp).level == 3


def test_package_schedule1_sections_and_json_roundtrip() -> None:
    now = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)
    pkg = build_nca_package(make_input(), declared_by="senior-b", now=now)
    assert pkg["schema"] == SCHEMA and pkg["schema_version"] == SCHEMA_VERSION
    assert pkg["reporting_provider"]["name"] == "Example Ltd"
    assert pkg["reporting_provider"]["reporting_person"]["email"] == "trust@example.com"
    c = pkg["content"][0]
    assert c["detection"] == {"method": "hash_match", "matched_list": "NCMEC_HASHES"}
    assert set(c["hashes"]) == {"md5", "sha256", "pdq"}
    assert [u["provider_user_id"] for u in pkg["users"]] == ["u-1001", "u-2002"]
    assert pkg["users"][0]["ip_addresses"][0] == {
        "ip": "203.0.113.7",
        "event": "Upload",
        "time": "2026-11-20T14:30:00Z",
        "port": 443,
        "possible_proxy": False,
    }
    assert pkg["declaration"]["declared_by"] == "senior-b" and pkg["declaration"]["confirmed"]
    assert pkg["review"]["senior_reviewer"] == "senior-b"
    assert pkg["priority"]["level"] == 2  # identified victim u-3003
    text = export_json(pkg)
    assert json.loads(text) == pkg
    assert nca_validate(json.loads(text)) == []


def test_package_requires_senior_and_declarant() -> None:
    with pytest.raises(NotConfirmed):
        build_nca_package(make_input(senior=False), declared_by="x")
    with pytest.raises(LeReportError, match="declared_by"):
        build_nca_package(make_input(), declared_by="  ")


def test_ncmec_reported_content_is_marked() -> None:
    inp = make_input()
    assert len(outstanding_content(inp)) == 1
    done = {"IMG_0001.png": "10000001"}
    assert outstanding_content(inp, done) == []
    pkg = build_nca_package(inp, declared_by="s", ncmec_report_ids=done)
    assert pkg["content"][0]["already_reported_to_ncmec"] is True
    assert pkg["content"][0]["ncmec_report_id"] == "10000001"
    assert pkg["outstanding_content_count"] == 0
    # the same via the file's own record of an earlier CyberTipline report
    f = dataclasses.replace(inp.files[0], ncmec_report_id="999")
    assert outstanding_content(dataclasses.replace(inp, files=(f,))) == []


def test_submit_to_standin_recorded_and_audited(standin: NcaStandin, db: Database) -> None:
    res = nca_client(standin, db).submit(make_input(), actor="senior-b", declared_by="senior-b")
    assert res.submitted and res.reference == "NCA-000001" and res.priority == 2
    assert standin.received[0]["report_ref"] == "case-42"
    with db.read_session() as s:
        rows = s.execute(select(LeSubmission).where(LeSubmission.target == "nca")).scalars().all()
        audits = (
            s.execute(select(AuditRecord).where(AuditRecord.action == "le_report.nca.submit"))
            .scalars()
            .all()
        )
    assert [(r.kind, r.http_status, r.report_id) for r in rows] == [("submit", 201, "NCA-000001")]
    assert len(audits) == 1 and audits[0].subject_id == "case-42"


def test_submit_retries_503(standin: NcaStandin, db: Database) -> None:
    standin.fail_next("/api/v1/reports", 503, count=1)
    c = nca_client(standin, db, backoff_s=0.25)
    res = c.submit(make_input(), actor="a", declared_by="senior-b")
    assert res.submitted and c.sleeps == [0.25]  # type: ignore[attr-defined]
    assert len(standin.received) == 1
    with db.read_session() as s:
        rows = s.execute(select(LeSubmission).order_by(LeSubmission.id)).scalars().all()
    assert [(r.attempt, r.http_status) for r in rows] == [(1, 503), (2, 201)]


def test_rejected_package_not_retried(standin: NcaStandin) -> None:
    c = NcaClient(NcaConfig(base_url=standin.url, token="wrong"), sleep=lambda _: None)
    with pytest.raises(NcaError, match="HTTP 401") as ei:
        c.submit(make_input(), actor="a", declared_by="senior-b")
    assert ei.value.http_status == 401
    assert len(standin.requests) == 1


def test_standin_rejects_incomplete_package() -> None:
    pkg = build_nca_package(make_input(), declared_by="s")
    del pkg["declaration"]
    assert "missing section 'declaration'" in nca_validate(pkg)
    pkg = build_nca_package(make_input(), declared_by="s")
    pkg["priority"]["level"] = 4
    assert any("priority" in e for e in nca_validate(pkg))


def test_all_content_reported_to_ncmec_skips_submission(standin: NcaStandin, db: Database) -> None:
    c = nca_client(standin, db)
    res = c.submit(
        make_input(), actor="a", declared_by="s", ncmec_report_ids={"IMG_0001.png": "10000001"}
    )
    assert not res.submitted and standin.requests == []
    with db.read_session() as s:
        (row,) = s.execute(select(LeSubmission)).scalars().all()
    assert row.kind == "skipped" and "already reported to NCMEC" in row.error
    forced = c.submit(
        make_input(),
        actor="a",
        declared_by="s",
        ncmec_report_ids={"IMG_0001.png": "10000001"},
        force=True,
    )
    assert forced.submitted
    assert standin.received[0]["content"][0]["already_reported_to_ncmec"] is True


def test_incident_requires_summary() -> None:
    with pytest.raises(LeReportError, match="summary"):
        Incident(IncidentType.CHILD_PORNOGRAPHY, T0, " ")
