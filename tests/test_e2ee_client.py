"""The client toolkit on its own (no server): test vectors a port must reproduce (built here byte by
byte, independently of the toolkit's encoder), device hashing equal to the server's, a whole
device-to-device franking flow over a stand-in E2EE channel, child-protection hooks, vouchers
re-exported from private matching, and no database or web layer loaded on the device."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from conftest import PHOTOS
from lifeguard.e2ee import client
from lifeguard.e2ee.franking import (
    AttachmentRef,
    FrankingError,
    FrankingKeys,
    FrankingService,
    ReportRejected,
    commit,
    compute_tag,
    key_id,
)
from lifeguard.errors import MediaError
from lifeguard.settings import Settings
from lifeguard.signals.hasher import hash_bytes

PICS = sorted(p for p in PHOTOS.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))

# The vectors printed in docs/client-toolkit.md.
KF = bytes(range(32))
REF = AttachmentRef(b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 12, "image/jpeg")
SERVER_KEY = b"\x11" * 32
VEC_COMMIT_TEXT = "2b42d62d735d6e8b9dee6b128d09d6bfa6b870e05addd0d7cffe2941f0a9a7ef"
VEC_COMMIT_ATT = "6be8bd7738b477d873008917a6a1fe19bd6267380a5e0284092f3c6c8a2b144a"
VEC_KEY_ID = "0d04ab555ddc8d27"
VEC_TAG = "bd6491524e84f74d05dd8a682c46d3858633b303dbbcd5fc431a816ac19d9284"


def _lp(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def test_commitment_and_tag_vectors() -> None:
    # Built by hand from the layout in docs/client-toolkit.md.
    msg = b"lifeguard-franking-commit-v1\x00" + _lp(b"hello") + (0).to_bytes(4, "big")
    assert hmac.new(KF, msg, hashlib.sha256).hexdigest() == VEC_COMMIT_TEXT
    assert commit(KF, "hello").hex() == VEC_COMMIT_TEXT
    msg = (
        b"lifeguard-franking-commit-v1\x00"
        + _lp(b"hello")
        + (1).to_bytes(4, "big")
        + _lp(b"\xaa" * 32)
        + _lp(b"\xbb" * 32)
        + _lp(b"\xcc" * 12)
        + _lp(b"image/jpeg")
    )
    assert hmac.new(KF, msg, hashlib.sha256).hexdigest() == VEC_COMMIT_ATT
    assert commit(KF, "hello", [REF]).hex() == VEC_COMMIT_ATT
    kid = hashlib.sha256(b"lifeguard-franking-key-id\x00" + SERVER_KEY).hexdigest()[:16]
    assert kid == key_id(SERVER_KEY) == VEC_KEY_ID
    tag_msg = (
        b"lifeguard-franking-tag-v1\x00"
        + _lp(kid.encode())
        + _lp(bytes.fromhex(VEC_COMMIT_ATT))
        + _lp(b"user:alice")
        + _lp(b"user:bob")
        + _lp(b"conv-1")
        + struct.pack(">q", 1764000000000)
    )
    assert hmac.new(SERVER_KEY, tag_msg, hashlib.sha256).hexdigest() == VEC_TAG
    got = compute_tag(
        SERVER_KEY, kid, bytes.fromhex(VEC_COMMIT_ATT), "user:alice", "user:bob", "conv-1",
        1764000000000,
    )  # fmt: skip
    assert got.hex() == VEC_TAG
    # Length prefixes keep field boundaries: moving a character between fields changes the tag.
    moved = compute_tag(
        SERVER_KEY, kid, bytes.fromhex(VEC_COMMIT_ATT), "user:alice", "user:bo", "bconv-1",
        1764000000000,
    )  # fmt: skip
    assert moved.hex() != VEC_TAG


def test_device_hashes_equal_the_servers() -> None:
    for p in PICS[:3]:
        data = p.read_bytes()
        mine = client.hash_image(data)
        server = hash_bytes(data, p.name, Settings())
        assert (mine.pdq, mine.md5, mine.pdq_quality) == (server.pdq, server.md5, server.quality)
        assert client.hash_image(p) == mine
    with pytest.raises((MediaError, FrankingError)):
        client.hash_image(b"this is not an image at all")


class StandInChannel:
    """Stands in for the messenger's E2EE layer (e.g. the Signal protocol): one shared key."""

    def __init__(self) -> None:
        self.key = ChaCha20Poly1305.generate_key()

    def seal(self, payload: dict[str, Any]) -> bytes:
        nonce = os.urandom(12)
        return nonce + ChaCha20Poly1305(self.key).encrypt(nonce, json.dumps(payload).encode(), None)

    def open(self, blob: bytes) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(
            ChaCha20Poly1305(self.key).decrypt(blob[:12], blob[12:], None)
        )
        return out


def test_device_to_device_flow_without_a_server() -> None:
    """Alice's device franks and encrypts; the relay sees only ciphertext, the commitment and the
    ids; Bob's device checks the commitment on receipt and builds a report the verifier accepts."""
    chan = StandInChannel()
    photo = PICS[0].read_bytes()
    secret_text = "don't tell your parents, delete this chat"
    fm = client.frank(secret_text, [(photo, "image/png")])
    wire = chan.seal(fm.payload())
    relay_sees = {"commitment": fm.commitment, "ciphertext": wire,
                  "blob": fm.attachments[0].ciphertext}  # fmt: skip
    flat = b"".join(relay_sees.values())
    assert secret_text.encode() not in flat and fm.franking_key not in flat
    assert fm.attachments[0].ref.key not in flat and photo[:64] not in flat
    verifier = FrankingService(None, FrankingKeys([os.urandom(32)]))  # type: ignore[arg-type]
    stamp = verifier.stamp(fm.commitment, sender="alice", recipient="bob")
    got = client.receive(chan.open(wire), fm.commitment, stamp.to_json(), me="bob")
    assert got.text == secret_text
    assert got.attachment(0, relay_sees["blob"]) == photo
    # A message whose payload was changed after committing is caught on receipt.
    bad = chan.open(wire)
    bad["attachments"][0]["mime"] = "text/plain"
    with pytest.raises(ReportRejected):
        client.receive(bad, fm.commitment, stamp, me="bob")
    body = client.build_report(got, [relay_sees["blob"]], category="grooming")
    assert body["stamp"]["tag"] and body["attachments"][0]["ciphertext"]
    with pytest.raises(FrankingError):
        client.build_report(got, [])


def test_child_protection_hooks() -> None:
    hooks = client.ChildProtectionHooks()
    seen: list[tuple[str, str]] = []

    def risk(text: str, sender: str) -> client.HookResult | None:
        seen.append((text, sender))
        if "snapchat" in text.lower():
            return client.HookResult("risk", "warn", "asks to move to another app")
        return None

    def broken(text: str, sender: str) -> client.HookResult | None:
        raise RuntimeError("model missing")

    def blur_all(data: bytes, sender: str) -> client.HookResult:
        return client.HookResult("nudity", "blur", "", {"bytes": len(data)})

    hooks.register("incoming_text", "risk", risk)
    hooks.register("incoming_image", "nudity", blur_all)
    assert hooks.incoming_text("hi", sender="a") == []
    res = hooks.incoming_text("add me on snapchat", sender="a")
    assert [r.verdict for r in res] == ["warn"]
    hooks.register("incoming_text", "broken", broken)
    res = hooks.incoming_text("hello", sender="a")
    assert [(r.hook, r.verdict) for r in res] == [("broken", "warn")]
    assert "RuntimeError" in res[0].reason
    assert client.ChildProtectionHooks.strongest(hooks.incoming_image(b"xx", sender="a")) == "blur"
    assert client.ChildProtectionHooks.strongest([]) == "allow"
    with pytest.raises(ValueError, match="hook kind"):
        hooks.register("sideways", "x", risk)
    # receive() runs the incoming-text hooks and keeps their results with the message.
    verifier = FrankingService(None, FrankingKeys([os.urandom(32)]))  # type: ignore[arg-type]
    fm = client.frank("move to snapchat now")
    st = verifier.stamp(fm.commitment, sender="stranger", recipient="kid")
    got = client.receive(fm.payload(), fm.commitment, st, me="kid", hooks=hooks)
    assert ("move to snapchat now", "stranger") in seen
    assert client.ChildProtectionHooks.strongest(got.hook_results) == "warn"
    # frank() runs the outgoing hooks; their results stay on the device (not in the payload).
    hooks.register("outgoing_image", "nudity", blur_all)
    out = client.frank("hi", [(b"img", "image/png")], hooks=hooks, recipient="kid")
    assert [r.verdict for r in out.hook_results] == ["blur"]
    assert "nudity" not in json.dumps(out.payload())


def test_vouchers_are_re_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    pm = pytest.importorskip("lifeguard.e2ee.private_matching")
    assert client.vouchers_available()
    assert client.AccountState is pm.AccountState
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(pm, "make_voucher", lambda *a, **k: calls.append(a) or b"voucher")
    assert client.make_voucher("img", "table", "state") == b"voucher"
    assert calls == [("img", "table", "state")]
    monkeypatch.setattr(client, "_private_matching", lambda: None)
    assert not client.vouchers_available()
    with pytest.raises(FrankingError) as ei:
        client.make_voucher("img")
    assert ei.value.code == "vouchers_unavailable"
    with pytest.raises(AttributeError):
        _ = client.NoSuchThing  # type: ignore[attr-defined]


def test_toolkit_loads_no_server_layer() -> None:
    code = (
        "import sys, lifeguard.e2ee.client as c; c.frank('x'); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'fastapi', 'sqlalchemy', 'uvicorn', 'starlette', 'alembic', 'psycopg'}))"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(src)},
    )
    assert out.stdout.strip() == "[]"
