"""Client toolkit: the reference of what runs on a user's device, usable without the server.

Pure Python over ``cryptography`` (HMAC-SHA256, AES-256-GCM) and lifeguard's own hasher; every
function is small and documented so that mobile teams can port it (docs/client-toolkit.md gives the
byte formats and test vectors to check a port against).

* Hashing: :func:`hash_image` → PDQ (+ quality) and MD5, computed on the device.
* Franking (sender): :func:`frank` → the commitment to send in the clear and the E2EE payload fields
  (franking key, attachment keys) to send inside the encrypted message.
* Franking (recipient): :func:`receive` checks on receipt that the commitment opens (a message that
  cannot be reported is flagged), :func:`build_report` makes the report body.
* Take it down: :class:`TakeItDownClient` hashes images locally and sends only the hashes.
* Child-protection hooks: :class:`ChildProtectionHooks` lets the app plug on-device checks
  (nudity warning, conversation risk) into the send/receive flow.
* Vouchers for private matching: :func:`make_voucher` (with ``AccountState``/``BlindedTable``),
  re-exported from ``lifeguard.e2ee.private_matching`` (:func:`vouchers_available`).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from lifeguard.e2ee.franking import (
    AttachmentRef,
    FrankingError,
    ReportRejected,
    Stamp,
    b64d,
    b64e,
    commit,
    decrypt_attachment,
    encrypt_attachment,
    opens,
)
from lifeguard.e2ee.takedown import AGE_BANDS, ImageHashes
from lifeguard.settings import Settings

__all__ = [
    "AGE_BANDS",
    "ChildProtectionHooks",
    "FrankedMessage",
    "HookResult",
    "ImageHashes",
    "OutgoingAttachment",
    "ReceivedMessage",
    "TakeItDownClient",
    "build_report",
    "frank",
    "hash_image",
    "make_voucher",
    "receive",
    "vouchers_available",
]

# --------------------------------------------------------------------------- hashing


def hash_image(image: bytes | str | Path, settings: Settings | None = None) -> ImageHashes:
    """PDQ, its quality and MD5 of an image, on the device. Nothing else of the image is kept."""
    from lifeguard.signals.hasher import hash_bytes

    data = Path(image).read_bytes() if isinstance(image, (str, Path)) else image
    h = hash_bytes(data, "image", settings or Settings())
    if h.kind != "image" or not h.pdq:
        raise FrankingError("not an image", code="not_an_image")
    return ImageHashes(pdq=h.pdq, md5=h.md5, pdq_quality=h.quality)


# --------------------------------------------------------------------------- franking


@dataclass(frozen=True)
class OutgoingAttachment:
    """An encrypted attachment: upload ``ciphertext`` to the blob store; ``ref`` travels E2EE."""

    ciphertext: bytes
    ref: AttachmentRef


@dataclass(frozen=True)
class FrankedMessage:
    """A message ready to encrypt: ``commitment`` goes in the clear to the server; ``payload()``
    goes inside the E2EE ciphertext (never to the server)."""

    text: str
    franking_key: bytes
    commitment: bytes
    attachments: tuple[OutgoingAttachment, ...] = ()
    #: What the outgoing child-protection hooks said (on the device only; not in the payload).
    hook_results: tuple[HookResult, ...] = ()

    def payload(self) -> dict[str, Any]:
        """The fields the E2EE layer must carry to the recipient (JSON-safe)."""
        return {
            "text": self.text,
            "franking_key": b64e(self.franking_key),
            "attachments": [_ref_json(a.ref) for a in self.attachments],
        }


def _ref_json(r: AttachmentRef) -> dict[str, str]:
    return {
        "ciphertext_sha256": r.ciphertext_sha256.hex(),
        "key": b64e(r.key),
        "nonce": b64e(r.nonce),
        "mime": r.mime,
    }


def _ref_from_json(d: Mapping[str, Any], where: str) -> AttachmentRef:
    try:
        sha = bytes.fromhex(str(d["ciphertext_sha256"]))
    except (KeyError, ValueError):
        raise FrankingError(
            f"{where}.ciphertext_sha256: 64 hex characters", code="invalid_field"
        ) from None
    return AttachmentRef(
        ciphertext_sha256=sha,
        key=b64d(str(d.get("key", "")), f"{where}.key", size=32),
        nonce=b64d(str(d.get("nonce", "")), f"{where}.nonce", size=12),
        mime=str(d.get("mime", "application/octet-stream")),
    )


def frank(
    text: str,
    attachments: Sequence[tuple[bytes, str]] = (),
    *,
    franking_key: bytes | None = None,
    hooks: ChildProtectionHooks | None = None,
    recipient: str = "",
) -> FrankedMessage:
    """Encrypt the attachments (AES-256-GCM, fresh key each) and commit to the text plus each
    attachment's ciphertext hash, key, nonce and type under a fresh franking key. With ``hooks``,
    the outgoing text and image checks run first; their results come back on the message (the app
    decides what to do with a ``warn``/``blur``/``block``; nothing is sent anywhere)."""
    results: list[HookResult] = []
    if hooks is not None:
        results += hooks.outgoing_text(text, recipient=recipient)
        for data, _mime in attachments:
            results += hooks.outgoing_image(data, recipient=recipient)
    k_f = franking_key or os.urandom(32)
    outs: list[OutgoingAttachment] = []
    for data, mime in attachments:
        ct, ref = encrypt_attachment(data)
        outs.append(
            OutgoingAttachment(ct, AttachmentRef(ref.ciphertext_sha256, ref.key, ref.nonce, mime))
        )
    c = commit(k_f, text, [a.ref for a in outs])
    return FrankedMessage(
        text=text,
        franking_key=k_f,
        commitment=c,
        attachments=tuple(outs),
        hook_results=tuple(results),
    )


@dataclass(frozen=True)
class ReceivedMessage:
    """A received message whose commitment opened; keep it (on the device) to report later."""

    text: str
    franking_key: bytes
    commitment: bytes
    stamp: Stamp
    attachments: tuple[AttachmentRef, ...] = ()
    hook_results: tuple[HookResult, ...] = ()

    def attachment(self, i: int, ciphertext: bytes) -> bytes:
        """Decrypt attachment ``i`` from its downloaded ciphertext (checked against the commitment)."""
        return decrypt_attachment(ciphertext, self.attachments[i])


def parse_stamp(d: Mapping[str, Any]) -> Stamp:
    try:
        return Stamp(
            tag=b64d(str(d["tag"]), "stamp.tag", size=32),
            key_id=str(d["key_id"]),
            timestamp_ms=int(d["timestamp_ms"]),
            sender=str(d["sender"]),
            recipient=str(d["recipient"]),
            conversation=str(d.get("conversation", "")),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise FrankingError(
            f"stamp: missing or malformed field ({e})", code="invalid_field"
        ) from None


def receive(
    payload: Mapping[str, Any],
    commitment: bytes,
    stamp: Stamp | Mapping[str, Any],
    *,
    me: str,
    hooks: ChildProtectionHooks | None = None,
) -> ReceivedMessage:
    """The recipient's check on receipt: the decrypted ``payload`` must open the ``commitment`` the
    server stamped, and the stamp must name this user as recipient. A message failing this could
    not be reported, so the app should not show it as a normal message."""
    st = stamp if isinstance(stamp, Stamp) else parse_stamp(stamp)
    if st.recipient != me:
        raise ReportRejected("message was stamped for another recipient", code="not_recipient")
    text = payload.get("text")
    if not isinstance(text, str):
        raise FrankingError("payload.text: expected a string", code="invalid_field")
    k_f = b64d(str(payload.get("franking_key", "")), "payload.franking_key", size=32)
    raw = payload.get("attachments") or []
    if not isinstance(raw, list):
        raise FrankingError("payload.attachments: expected a list", code="invalid_field")
    refs = tuple(_ref_from_json(a, f"payload.attachments[{i}]") for i, a in enumerate(raw))
    if not opens(commitment, k_f, text, refs):
        raise ReportRejected(
            "the message does not open its commitment (it could not be reported)",
            code="commitment_mismatch",
        )
    results = hooks.incoming_text(text, sender=st.sender) if hooks else ()
    return ReceivedMessage(text, k_f, commitment, st, refs, tuple(results))


def build_report(
    msg: ReceivedMessage,
    ciphertexts: Sequence[bytes] = (),
    *,
    category: str = "other_child_safety",
    child_at_risk_now: bool = False,
    note: str = "",
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/e2ee/reports`` (sent by the user's app through the platform,
    which fills in ``reporter`` from its own authentication). ``ciphertexts`` are the attachments'
    ciphertexts in order (the platform may instead fetch them from its blob store)."""
    if len(ciphertexts) != len(msg.attachments):
        raise FrankingError(
            f"{len(ciphertexts)} ciphertexts for {len(msg.attachments)} attachments",
            code="invalid_field",
        )
    return {
        "text": msg.text,
        "franking_key": b64e(msg.franking_key),
        "commitment": b64e(msg.commitment),
        "stamp": msg.stamp.to_json(),
        "reporter": msg.stamp.recipient,
        "category": category,
        "child_at_risk_now": child_at_risk_now,
        "note": note,
        "attachments": [
            {**_ref_json(r), "ciphertext": b64e(ct)}
            for r, ct in zip(msg.attachments, ciphertexts, strict=True)
        ],
    }


# --------------------------------------------------------------------------- hooks

Verdict = Literal["allow", "warn", "blur", "block"]
_ORDER: dict[str, int] = {"allow": 0, "warn": 1, "blur": 2, "block": 3}


@dataclass(frozen=True)
class HookResult:
    """What one on-device check says: ``verdict`` plus a reason to show or log locally."""

    hook: str
    verdict: Verdict
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)


TextHook = Callable[[str, str], HookResult | None]
ImageHook = Callable[[bytes, str], HookResult | None]


class ChildProtectionHooks:
    """On-device child-protection checks, run by the app on each outgoing/incoming text or image.

    Register e.g. a nudity detector (``lifeguard.safety.nudity``) on ``incoming_image`` for a child
    account, or the conversation-risk scorer on ``incoming_text``. Hooks run on the device; their
    results stay there unless the user chooses to report. A hook that raises is reported as a
    ``warn`` result (never silently ignored, never crashing the message flow)."""

    KINDS = ("outgoing_text", "incoming_text", "outgoing_image", "incoming_image")

    def __init__(self) -> None:
        self._hooks: dict[str, list[tuple[str, Callable[..., HookResult | None]]]] = {
            k: [] for k in self.KINDS
        }

    def register(self, kind: str, name: str, fn: Callable[..., HookResult | None]) -> None:
        if kind not in self._hooks:
            raise ValueError(f"hook kind {kind!r}: one of {', '.join(self.KINDS)}")
        self._hooks[kind].append((name, fn))

    def _run(self, kind: str, *args: Any) -> list[HookResult]:
        out: list[HookResult] = []
        for name, fn in self._hooks[kind]:
            try:
                r = fn(*args)
            except Exception as e:  # a broken check must not break messaging
                r = HookResult(name, "warn", f"check failed: {type(e).__name__}")
            if r is not None:
                out.append(r)
        return out

    def outgoing_text(self, text: str, *, recipient: str) -> list[HookResult]:
        return self._run("outgoing_text", text, recipient)

    def incoming_text(self, text: str, *, sender: str) -> list[HookResult]:
        return self._run("incoming_text", text, sender)

    def outgoing_image(self, data: bytes, *, recipient: str) -> list[HookResult]:
        return self._run("outgoing_image", data, recipient)

    def incoming_image(self, data: bytes, *, sender: str) -> list[HookResult]:
        return self._run("incoming_image", data, sender)

    @staticmethod
    def strongest(results: Iterable[HookResult]) -> Verdict:
        """The strictest verdict among ``results`` (``allow`` if none)."""
        best: Verdict = "allow"
        for r in results:
            if _ORDER[r.verdict] > _ORDER[best]:
                best = r.verdict
        return best


# --------------------------------------------------------------------------- take it down


class TakeItDownClient:
    """Take it down from the device: images are hashed here; only ``{pdq, pdq_quality, md5}`` per
    image (and the optional age band) are sent. ``transport`` lets tests record every request."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        settings: Settings | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            transport=transport,
            timeout=timeout,
        )
        self.settings = settings

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TakeItDownClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self._http.post(
            path, content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        if r.status_code >= 400:
            try:
                p = r.json()
            except ValueError:
                p = {"code": "http_error", "detail": r.text}
            raise TakeItDownError(r.status_code, str(p.get("code", "")), str(p.get("detail", "")))
        out: dict[str, Any] = r.json()
        return out

    def submit(
        self, images: Sequence[bytes | str | Path], *, age_band: str | None = None
    ) -> dict[str, Any]:
        """Hash each image on the device and submit the hashes. Returns the server's answer with the
        ``receipt`` code (shown once: keep it to check or withdraw later)."""
        hashes = [hash_image(im, self.settings).to_json() for im in images]
        body: dict[str, Any] = {"images": hashes}
        if age_band:
            body["age_band"] = age_band
        return self._post("/v1/takedown/submissions", body)

    def status(self, receipt: str) -> dict[str, Any]:
        return self._post("/v1/takedown/status", {"receipt": receipt})

    def withdraw(self, receipt: str) -> dict[str, Any]:
        return self._post("/v1/takedown/withdraw", {"receipt": receipt})


class TakeItDownError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


# --------------------------------------------------------------------------- vouchers
# Voucher creation belongs to private matching (lifeguard.e2ee.private_matching); the toolkit
# re-exports it, resolved on first use so a build without that module still loads the toolkit.

_VOUCHER_NAMES = ("AccountState", "BlindedTable")


def _private_matching() -> Any | None:
    try:
        return importlib.import_module("lifeguard.e2ee.private_matching")
    except ImportError:
        return None


def vouchers_available() -> bool:
    """Whether this build includes private matching (voucher creation)."""
    pm = _private_matching()
    return pm is not None and callable(getattr(pm, "make_voucher", None))


def make_voucher(*args: Any, **kwargs: Any) -> bytes:
    """Create a private-matching voucher for one image: the same call as
    ``lifeguard.e2ee.private_matching.make_voucher(image_or_pdq, table, account_state, ...)``
    (docs/private-matching.md)."""
    pm = _private_matching()
    fn = getattr(pm, "make_voucher", None) if pm is not None else None
    if fn is None:
        raise FrankingError(
            "private matching is not part of this build", code="vouchers_unavailable"
        )
    out: bytes = fn(*args, **kwargs)
    return out


def __getattr__(name: str) -> Any:
    """``AccountState`` and ``BlindedTable`` from private matching, for voucher creation."""
    if name in _VOUCHER_NAMES:
        pm = _private_matching()
        if pm is not None and hasattr(pm, name):
            return getattr(pm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
