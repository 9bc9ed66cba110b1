"""Message franking: verifiable abuse reports for end-to-end encrypted messages.

The committed franking scheme of deployed E2EE messengers (Facebook Messenger "Secret Conversations",
formalised by Grubbs, Lu and Ristenpart, CRYPTO 2017), with attachments committed as ciphertext hash
*and* key (Dodis, Grubbs, Ristenpart and Woodage, CRYPTO 2018: AES-GCM is not key-committing, so a
commitment to the key alone lets a sender pick a ciphertext that opens to two images).

Sender (on the device, :mod:`lifeguard.e2ee.client`)::

    k_f  = 32 random bytes (fresh per message; travels INSIDE the E2EE payload)
    c    = HMAC-SHA256(k_f, encode(text, [(SHA-256(C_i), k_i, nonce_i, mime_i) for attachments]))
    send c in the clear with the E2EE ciphertext

Server at delivery (:meth:`FrankingService.stamp`, never sees content)::

    t = HMAC-SHA256(K_server[kid], encode(kid, c, sender, recipient, conversation, time_ms))
    deliver (c, t, kid, time_ms) with the ciphertext; keep nothing

Recipient on receipt checks that ``c`` opens with the decrypted message and ``k_f``. A report reveals
(text, k_f, attachments with ciphertext, key and nonce, c, t, kid, time, sender, recipient,
conversation); :meth:`FrankingService.verify_report` recomputes ``c`` from the revealed message, checks
``t`` under key ``kid``, decrypts every attachment with its committed key and refuses a second report of
the same stamped message. All byte strings are length-prefixed, so no two field lists encode alike.
Only HMAC-SHA256, SHA-256 and AES-256-GCM from ``cryptography``; no primitive is hand-rolled.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lifeguard.errors import Conflict, LifeguardError
from lifeguard.keyfiles import keys_from_env, parse_keys

if TYPE_CHECKING:  # the device side (lifeguard.e2ee.client) never loads the database layer
    from lifeguard.store.db import Database

KEYS_ENV = "LIFEGUARD_FRANKING_KEYS"
KEYS_FILE_ENV = "LIFEGUARD_FRANKING_KEYS_FILE"
WINDOW_ENV = "LIFEGUARD_FRANKING_REPORT_WINDOW_DAYS"
COMMIT_DOMAIN = b"lifeguard-franking-commit-v1\x00"
TAG_DOMAIN = b"lifeguard-franking-tag-v1\x00"
ATTACHMENT_AAD = b"lifeguard-attachment-v1\x00"
KEY_BYTES = 32
NONCE_BYTES = 12
MAC_BYTES = 32
MAX_ID = 256
MAX_ATTACHMENTS = 16
#: A stamp's time may run ahead of the verifier's clock by this much (replicas' clocks differ).
CLOCK_SKEW = dt.timedelta(minutes=5)
DEFAULT_WINDOW = dt.timedelta(days=90)
#: Stamp times are milliseconds since 1970 up to the end of year 9999.
MAX_TIMESTAMP_MS = 253_402_300_799_999


class FrankingError(LifeguardError):
    """A franking input or report is unusable; ``code`` says which check failed."""

    code = "franking_error"


class FrankingKeyError(FrankingError):
    """Server franking keys are missing or malformed, or a stamp names a key not configured."""

    code = "franking_key"


class ReportRejected(FrankingError):
    """A report did not verify. Codes: ``commitment_mismatch`` (the revealed message or key does not
    open the commitment), ``invalid_tag`` (the stamp is forged or its metadata was changed),
    ``unknown_key_id``, ``not_recipient``, ``attachment_mismatch``, ``attachment_decrypt``,
    ``report_expired``, ``stamp_in_future``."""

    code = "report_rejected"


class AlreadyReported(Conflict):
    """The same stamped message was reported before (a replay). 409 over HTTP."""

    code = "already_reported"

    def __init__(self, message: str, report_id: int) -> None:
        super().__init__(message)
        self.report_id = report_id


# --------------------------------------------------------------------------- encoding


def lp(b: bytes) -> bytes:
    """Length-prefixed bytes (4-byte big-endian length)."""
    return struct.pack(">I", len(b)) + b


def b64e(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def b64d(s: str, what: str, *, size: int | None = None) -> bytes:
    """Base64 (standard or URL-safe alphabet) to bytes, or a :class:`FrankingError` naming ``what``."""
    if not isinstance(s, str):
        raise FrankingError(f"{what}: expected a base64 string", code="invalid_field")
    t = s.strip().replace("-", "+").replace("_", "/")
    t += "=" * (-len(t) % 4)
    try:
        out = base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError):
        raise FrankingError(f"{what}: not valid base64", code="invalid_field") from None
    if size is not None and len(out) != size:
        raise FrankingError(f"{what}: {len(out)} bytes, expected {size}", code="invalid_field")
    return out


def check_id(value: object, what: str, *, empty_ok: bool = False) -> str:
    """A user or conversation id: 1..256 characters without control characters."""
    if not isinstance(value, str):
        raise FrankingError(f"{what}: expected a string", code="invalid_field")
    if not value and not empty_ok:
        raise FrankingError(f"{what}: must not be empty", code="invalid_field")
    if len(value) > MAX_ID:
        raise FrankingError(
            f"{what}: {len(value)} characters, at most {MAX_ID}", code="invalid_field"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise FrankingError(f"{what}: contains a control character", code="invalid_field")
    return value


@dataclass(frozen=True)
class AttachmentRef:
    """What the commitment says about one attachment: its ciphertext's SHA-256, the AES-256-GCM key
    and nonce that decrypt it, and its media type. (The ciphertext itself sits in the platform's blob
    store; the key and nonce travel inside the E2EE payload.)"""

    ciphertext_sha256: bytes
    key: bytes
    nonce: bytes
    mime: str = "application/octet-stream"

    def __post_init__(self) -> None:
        if len(self.ciphertext_sha256) != 32:
            raise FrankingError("attachment ciphertext_sha256: 32 bytes", code="invalid_field")
        if len(self.key) != KEY_BYTES:
            raise FrankingError("attachment key: 32 bytes (AES-256)", code="invalid_field")
        if len(self.nonce) != NONCE_BYTES:
            raise FrankingError("attachment nonce: 12 bytes", code="invalid_field")
        if len(self.mime) > 128 or any(ord(c) < 0x20 for c in self.mime):
            raise FrankingError(
                "attachment mime: at most 128 printable characters", code="invalid_field"
            )


def commitment_input(text: str, attachments: Sequence[AttachmentRef]) -> bytes:
    if len(attachments) > MAX_ATTACHMENTS:
        raise FrankingError(
            f"{len(attachments)} attachments, at most {MAX_ATTACHMENTS}", code="invalid_field"
        )
    parts = [COMMIT_DOMAIN, lp(text.encode("utf-8")), struct.pack(">I", len(attachments))]
    for a in attachments:
        parts += [lp(a.ciphertext_sha256), lp(a.key), lp(a.nonce), lp(a.mime.encode("utf-8"))]
    return b"".join(parts)


def commit(franking_key: bytes, text: str, attachments: Sequence[AttachmentRef] = ()) -> bytes:
    """The sender's commitment ``c = HMAC-SHA256(k_f, encode(text, attachments))``."""
    if len(franking_key) != KEY_BYTES:
        raise FrankingError("franking key: 32 bytes", code="invalid_field")
    return hmac.new(franking_key, commitment_input(text, attachments), hashlib.sha256).digest()


def opens(
    commitment: bytes, franking_key: bytes, text: str, attachments: Sequence[AttachmentRef] = ()
) -> bool:
    """Whether ``commitment`` opens to this message under ``franking_key`` (constant-time compare)."""
    return hmac.compare_digest(commitment, commit(franking_key, text, attachments))


def encrypt_attachment(data: bytes, *, key: bytes | None = None) -> tuple[bytes, AttachmentRef]:
    """AES-256-GCM under a fresh key and nonce: ``(ciphertext, ref)`` (the ref goes into the
    commitment and, with key and nonce, into the E2EE payload)."""
    key = key or AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    ct = AESGCM(key).encrypt(nonce, data, ATTACHMENT_AAD)
    return ct, AttachmentRef(hashlib.sha256(ct).digest(), key, nonce)


def decrypt_attachment(ciphertext: bytes, ref: AttachmentRef) -> bytes:
    """The attachment, after checking the ciphertext is the committed one. Raises ReportRejected."""
    if not hmac.compare_digest(hashlib.sha256(ciphertext).digest(), ref.ciphertext_sha256):
        raise ReportRejected(
            "attachment ciphertext is not the one the sender committed to",
            code="attachment_mismatch",
        )
    try:
        return AESGCM(ref.key).decrypt(ref.nonce, ciphertext, ATTACHMENT_AAD)
    except InvalidTag:
        raise ReportRejected(
            "attachment does not decrypt under its committed key", code="attachment_decrypt"
        ) from None


# --------------------------------------------------------------------------- server keys


def key_id(key: bytes) -> str:
    """A key's id, derived from the key (16 hex characters)."""
    return hashlib.sha256(b"lifeguard-franking-key-id\x00" + key).hexdigest()[:16]


class FrankingKeys:
    """The server's franking keys: the first stamps, all verify (rotate by putting a new key first
    and keeping the old ones until the report window has passed)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise FrankingKeyError("no franking key configured")
        for k in keys:
            if len(k) < 32:
                raise FrankingKeyError(f"franking keys need at least 32 bytes (got {len(k)})")
        self.current = keys[0]
        self.current_id = key_id(keys[0])
        self.by_id = {key_id(k): k for k in keys}

    @classmethod
    def parse(cls, text: str, source: str) -> FrankingKeys:
        """Base64 keys separated by commas or newlines; ``#`` starts a comment line."""
        return cls(parse_keys(text, source, FrankingKeyError, min_bytes=KEY_BYTES))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FrankingKeys:
        """From ``LIFEGUARD_FRANKING_KEYS`` (base64) or the file ``LIFEGUARD_FRANKING_KEYS_FILE``."""
        return cls(
            keys_from_env(
                KEYS_ENV,
                KEYS_FILE_ENV,
                FrankingKeyError,
                missing=f"franking is not enabled: set {KEYS_ENV} (base64 of 32 random bytes) "
                f"or {KEYS_FILE_ENV}",
                missing_code="franking_disabled",
                environ=environ,
                min_bytes=KEY_BYTES,
            )
        )

    def get(self, kid: str) -> bytes:
        try:
            return self.by_id[kid]
        except KeyError:
            raise ReportRejected(
                f"stamp was made with franking key {kid!r}, which is not configured",
                code="unknown_key_id",
            ) from None


def generate_key() -> str:
    """A new server franking key, base64."""
    return b64e(os.urandom(32))


# --------------------------------------------------------------------------- stamps


@dataclass(frozen=True)
class Stamp:
    """The server's franking tag and the metadata it binds."""

    tag: bytes
    key_id: str
    timestamp_ms: int
    sender: str
    recipient: str
    conversation: str = ""

    @property
    def time(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.timestamp_ms / 1000, dt.UTC)

    def to_json(self) -> dict[str, Any]:
        return {
            "tag": b64e(self.tag),
            "key_id": self.key_id,
            "timestamp_ms": self.timestamp_ms,
            "sender": self.sender,
            "recipient": self.recipient,
            "conversation": self.conversation,
        }


def tag_input(
    kid: str, commitment: bytes, sender: str, recipient: str, conversation: str, timestamp_ms: int
) -> bytes:
    return b"".join(
        [
            TAG_DOMAIN,
            lp(kid.encode("ascii")),
            lp(commitment),
            lp(sender.encode("utf-8")),
            lp(recipient.encode("utf-8")),
            lp(conversation.encode("utf-8")),
            struct.pack(">q", timestamp_ms),
        ]
    )


def compute_tag(
    key: bytes,
    kid: str,
    commitment: bytes,
    sender: str,
    recipient: str,
    conversation: str,
    timestamp_ms: int,
) -> bytes:
    msg = tag_input(kid, commitment, sender, recipient, conversation, timestamp_ms)
    return hmac.new(key, msg, hashlib.sha256).digest()


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class ReportedAttachment:
    ciphertext: bytes
    ref: AttachmentRef


@dataclass(frozen=True)
class FrankingReport:
    """What a recipient reveals to report a message (see docs/franking.md)."""

    text: str
    franking_key: bytes
    commitment: bytes
    stamp: Stamp
    reporter: str
    attachments: tuple[ReportedAttachment, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class VerifiedAttachment:
    data: bytes
    mime: str
    sha256: str


@dataclass(frozen=True)
class VerifiedReport:
    """A report that verified: the message as the sender committed to it, and who sent it when."""

    report_id: int
    text: str
    attachments: tuple[VerifiedAttachment, ...]
    sender: str
    recipient: str
    conversation: str
    sent_at: dt.datetime
    key_id: str
    reason: str
    reported_at: dt.datetime
    case_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def report_window() -> dt.timedelta:
    raw = os.environ.get(WINDOW_ENV, "").strip()
    if not raw:
        return DEFAULT_WINDOW
    try:
        days = float(raw)
    except ValueError:
        raise FrankingKeyError(f"{WINDOW_ENV}={raw!r}: not a number of days") from None
    if days <= 0:
        raise FrankingKeyError(f"{WINDOW_ENV}: must be > 0")
    return dt.timedelta(days=days)


class FrankingService:
    """Stamp commitments (stateless) and verify reports (one row per verified report, for replays)."""

    def __init__(
        self,
        db: Database,
        keys: FrankingKeys | None = None,
        *,
        window: dt.timedelta | None = None,
    ) -> None:
        self.db = db
        self._keys = keys
        self.window = window

    @property
    def keys(self) -> FrankingKeys:
        if self._keys is None:
            self._keys = FrankingKeys.from_env()
        return self._keys

    def stamp(
        self,
        commitment: bytes,
        *,
        sender: str,
        recipient: str,
        conversation: str = "",
        now: dt.datetime | None = None,
    ) -> Stamp:
        """Tag a commitment with sender, recipient, conversation and the server's time. Nothing is
        stored: the tag itself authenticates the metadata at report time."""
        if len(commitment) != MAC_BYTES:
            raise FrankingError(
                f"commitment: {len(commitment)} bytes, expected {MAC_BYTES}", code="invalid_field"
            )
        sender = check_id(sender, "sender")
        recipient = check_id(recipient, "recipient")
        conversation = check_id(conversation, "conversation", empty_ok=True)
        t = now or dt.datetime.now(dt.UTC)
        ms = int(t.timestamp() * 1000)
        keys = self.keys
        tag = compute_tag(
            keys.current, keys.current_id, commitment, sender, recipient, conversation, ms
        )
        return Stamp(tag, keys.current_id, ms, sender, recipient, conversation)

    def check(
        self, report: FrankingReport, *, now: dt.datetime | None = None
    ) -> list[VerifiedAttachment]:
        """Every cryptographic and policy check of a report, storing nothing. Raises ReportRejected."""
        st = report.stamp
        check_id(st.sender, "sender")
        check_id(st.recipient, "recipient")
        check_id(st.conversation, "conversation", empty_ok=True)
        check_id(report.reporter, "reporter")
        if len(st.tag) != MAC_BYTES or len(report.commitment) != MAC_BYTES:
            raise FrankingError("tag and commitment are 32 bytes each", code="invalid_field")
        if not 0 <= st.timestamp_ms <= MAX_TIMESTAMP_MS:
            raise FrankingError("stamp timestamp_ms out of range", code="invalid_field")
        key = self.keys.get(st.key_id)
        expect = compute_tag(
            key, st.key_id, report.commitment, st.sender, st.recipient, st.conversation,
            st.timestamp_ms,
        )  # fmt: skip
        if not hmac.compare_digest(expect, st.tag):
            raise ReportRejected(
                "the server's tag does not match this commitment, sender, recipient, conversation "
                "and time (forged, or taken from another message)",
                code="invalid_tag",
            )
        refs = [a.ref for a in report.attachments]
        if not opens(report.commitment, report.franking_key, report.text, refs):
            raise ReportRejected(
                "the revealed message and franking key do not open the sender's commitment",
                code="commitment_mismatch",
            )
        if report.reporter != st.recipient:
            raise ReportRejected(
                "only the recipient of a stamped message can report it", code="not_recipient"
            )
        t = now or dt.datetime.now(dt.UTC)
        if st.time > t + CLOCK_SKEW:
            raise ReportRejected("stamp time is in the future", code="stamp_in_future")
        window = self.window or report_window()
        if st.time < t - window:
            raise ReportRejected(
                f"message was sent more than {window.days} days ago; reports are accepted within "
                "the report window",
                code="report_expired",
            )
        out: list[VerifiedAttachment] = []
        for a in report.attachments:
            data = decrypt_attachment(a.ciphertext, a.ref)
            out.append(VerifiedAttachment(data, a.ref.mime, hashlib.sha256(data).hexdigest()))
        return out

    def verify_report(
        self, report: FrankingReport, *, now: dt.datetime | None = None
    ) -> VerifiedReport:
        """Check the report, then record it (once per stamped message: a second report of the same
        tag raises :class:`AlreadyReported`). The stored row holds ids, hashes and times only; the
        revealed content is returned to the caller, which files it as a case."""
        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError

        from lifeguard.e2ee.models import FrankingReportRow
        from lifeguard.reports import audit

        atts = self.check(report, now=now)
        st = report.stamp
        reported_at = now or dt.datetime.now(dt.UTC)
        tag_digest = hashlib.sha256(st.tag).hexdigest()
        row = FrankingReportRow(
            tag_sha256=tag_digest,
            commitment=report.commitment.hex(),
            key_id=st.key_id,
            sender=st.sender,
            recipient=st.recipient,
            conversation=st.conversation,
            sent_at=st.time,
            reported_at=reported_at,
            text_sha256=hashlib.sha256(report.text.encode("utf-8")).hexdigest(),
            attachment_sha256=[a.sha256 for a in atts],
            reason=report.reason[:1000],
            status="verified",
        )
        try:
            with self.db.session() as s:
                prior = s.execute(
                    select(FrankingReportRow.id).where(FrankingReportRow.tag_sha256 == tag_digest)
                ).scalar_one_or_none()
                if prior is not None:
                    raise AlreadyReported(
                        f"this message was already reported (report {prior})", int(prior)
                    )
                s.add(row)
                s.flush()
                report_id = int(row.id)
                audit.record(
                    s,
                    actor=f"reporter:{st.recipient}",
                    action="e2ee.report_verified",
                    subject_type="e2ee_franking_report",
                    subject_id=str(report_id),
                    details={"key_id": st.key_id, "attachments": len(atts)},
                )
        except IntegrityError:  # a concurrent report of the same message won the race
            with self.db.session() as s:
                prior = s.execute(
                    select(FrankingReportRow.id).where(FrankingReportRow.tag_sha256 == tag_digest)
                ).scalar_one()
            raise AlreadyReported(
                f"this message was already reported (report {prior})", int(prior)
            ) from None
        return VerifiedReport(
            report_id=report_id,
            text=report.text,
            attachments=tuple(atts),
            sender=st.sender,
            recipient=st.recipient,
            conversation=st.conversation,
            sent_at=st.time,
            key_id=st.key_id,
            reason=report.reason,
            reported_at=reported_at,
        )

    def set_case(self, report_id: int, case_id: int | None, error: str = "") -> None:
        from lifeguard.e2ee.models import FrankingReportRow

        with self.db.session() as s:
            row = s.get(FrankingReportRow, report_id)
            if row is not None:
                row.case_id = case_id
                row.enqueue_error = error[:2000]
