"""Seed data for the review web UI tests (not a test module): reviewer accounts, a P2 case from a
real match of a benign photo (a hash match carries no media), and a P1 case from a user report
(sextortion tactics, non-explicit) with a benign photo attached (kept in the evidence vault)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from lifeguard.actions.events import record_match
from lifeguard.banks import Banks
from lifeguard.matching import Matcher
from lifeguard.review.accounts import Accounts
from lifeguard.review.intake import UserReportIn
from lifeguard.review.roles import Actor, Role
from lifeguard.review.service import ReviewService
from lifeguard.settings import Settings
from lifeguard.signals.hasher import hash_bytes, hash_file
from lifeguard.store.db import Database

PW = "correct horse battery"
#: A fixed test-only evidence master key (32 bytes, base64).
EVIDENCE_KEY = base64.b64encode(b"review-web-test-evidence-key-32b").decode()


@dataclass(frozen=True)
class Seeded:
    match_case: int
    report_case: int
    report_item: int
    photo_bytes: bytes


def photos(shared_photos: Path) -> list[Path]:
    return sorted((shared_photos / "kodak").glob("*.png"))


def jpeg_of(path: Path) -> bytes:
    with Image.open(path) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=90)
        return buf.getvalue()


def seed(settings: Settings, shared_photos: Path) -> Seeded:
    """Needs ``LIFEGUARD_EVIDENCE_KEY`` set (to :data:`EVIDENCE_KEY`) in the environment."""
    db = Database.open(settings)
    try:
        acc = Accounts(db)
        acc.add("alice", PW, Role.REVIEWER)
        acc.add("bob", PW, Role.REVIEWER)
        acc.add("sam", PW, Role.SENIOR)

        ph = photos(shared_photos)
        banks = Banks(db)
        banks.create_bank("STANDIN_LISTED", categories=["csam"])
        listed = hash_file(ph[0], settings)
        assert listed.pdq is not None
        banks.add_entry("STANDIN_LISTED", "pdq", listed.pdq, external_id="stand-in-0")
        query = hash_bytes(jpeg_of(ph[0]), "upload.jpg", settings)
        res = Matcher(db, settings).match_media(query)
        assert res.matched
        record_match(db, res, "upload-1", query)

        svc = ReviewService(db, settings)
        assert svc.ingest_match_events() == 1
        match_case = svc.queue(Actor("seed", Role.ADMIN), status="open")[0].id

        photo = jpeg_of(ph[1])
        case = svc.submit_report(
            UserReportIn(
                reporter="user-77",
                reason="sextortion",
                surface="private_message",
                reported_account="acct-9",
                description="They say they will send my photos to my school unless I pay.",
            ),
            media=[("photo.jpg", photo)],
        )
        item = next(i for i in case.items if i.has_media)
        return Seeded(match_case, case.id, item.id, photo)
    finally:
        db.dispose()
