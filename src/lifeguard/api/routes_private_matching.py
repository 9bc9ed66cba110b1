"""``/v1/e2ee/private-matching``: threshold private matching of E2EE media (docs/private-matching.md).

* ``POST /table`` (admin): blind a list of PDQ hashes into a new table (replaces the current one).
* ``GET /table`` (match): the blinded table, bytes; ``GET /table/root`` (match): its commitment.
  Neither holds a secret: the platform serves the table to its clients (e.g. from a CDN), and every
  client checks it against the root the platform publishes.
* ``POST /vouchers`` (match): the platform's relay hands over a voucher from a message.
* ``GET /accounts/{account_id}`` (admin): what the server may know about an account.

State is in the database (migration 0009); the blinding key is sealed under a key derived from the
evidence master key (``LIFEGUARD_EVIDENCE_KEY``): without one they answer 403
``private_matching_disabled`` (503 when a key is configured but unusable).
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from lifeguard.api.problems import Problem
from lifeguard.api.routing import GuardedRoute, scoped
from lifeguard.api.state import get_state
from lifeguard.e2ee.private_matching import MatchingServer, Params, voucher_size
from lifeguard.e2ee.private_matching.store import PrivateMatchingService
from lifeguard.reports.evidence import KEY_ENV, KEY_FILE_ENV, EvidenceKeyError

pm = APIRouter(prefix="/v1/e2ee/private-matching", route_class=GuardedRoute)
_lock = threading.Lock()
TAGS: list[str | Any] = ["e2ee: private matching"]


class PmTableIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pdq: list[Annotated[str, Field(pattern="^[0-9a-fA-F]{64}$")]] = Field(
        min_length=1, max_length=20_000, description="Listed PDQ hashes (hex)."
    )
    threshold: int = Field(default=10, ge=1, le=1000)
    views: int = Field(default=1, ge=1, le=2)
    chunk_threshold: int = Field(default=1, ge=1, le=16)
    synthetic_rate: float = Field(default=0.02, ge=0.0, lt=1.0)


class PmTableInfo(BaseModel):
    root: str = Field(description="Hex SHA-256 commitment; clients refuse a table that differs.")
    slots: int
    bytes: int
    threshold: int
    views: int
    chunks: int
    chunk_threshold: int
    match_distance: int
    synthetic_rate: float
    voucher_bytes: int


class PmVoucherIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_id: str = Field(min_length=1, max_length=256)
    voucher: str = Field(max_length=8192, description="Base64 of the voucher bytes.")


class PmVoucherOut(BaseModel):
    received: bool = True


class PmMatchOut(BaseModel):
    voucher_id: str
    pdq: str
    quality: int
    distance: int
    listed_index: int
    associated_data: str = Field(description="Base64.")


class PmAccountOut(BaseModel):
    account_id: str
    received: int
    opened: int = Field(
        description="Vouchers whose outer layer opened (real, synthetic or chance)."
    )
    threshold: int
    threshold_reached: bool
    actionable: bool = Field(description="At least `threshold` vouchers passed the distance check.")
    matches: list[PmMatchOut]
    readable_not_counted: int
    synthetic_identified: int


def _service(request: Request) -> PrivateMatchingService:
    svc: PrivateMatchingService | None = getattr(request.app.state, "private_matching", None)
    if svc is None:
        with _lock:
            svc = getattr(request.app.state, "private_matching", None)
            if svc is None:
                svc = PrivateMatchingService(get_state(request).db)
                request.app.state.private_matching = svc
    return svc


def _not_configured(e: EvidenceKeyError) -> Problem:
    # No master key at all: the feature is off (the API's own refusal, as for franking). A key that
    # is configured but unusable: the server is misconfigured.
    if not (os.environ.get(KEY_ENV, "").strip() or os.environ.get(KEY_FILE_ENV, "").strip()):
        return Problem(403, "private_matching_disabled", f"private matching is off: {e.message}")
    return Problem(503, "private_matching_not_configured", e.message)


def _server(request: Request) -> MatchingServer:
    try:
        return _service(request).server()[1]
    except EvidenceKeyError as e:
        raise _not_configured(e) from None


def _info(srv: MatchingServer) -> dict[str, Any]:
    p = srv.params
    return {
        "root": srv.table.root,
        "slots": len(srv.table.slots),
        "bytes": srv.table.size_bytes,
        "threshold": p.threshold,
        "views": p.views,
        "chunks": p.chunks,
        "chunk_threshold": p.chunk_threshold,
        "match_distance": p.match_distance,
        "synthetic_rate": p.synthetic_rate,
        "voucher_bytes": voucher_size(p),
    }


@pm.post(
    "/table", tags=TAGS, summary="Blind a PDQ list into a new table", response_model=PmTableInfo
)
@scoped("admin")
async def create_table(request: Request, body: PmTableIn) -> dict[str, Any]:
    params = Params(
        views=body.views,
        chunk_threshold=min(body.chunk_threshold, body.views * 8),
        threshold=body.threshold,
        synthetic_rate=body.synthetic_rate,
    )

    svc = _service(request)

    def build() -> MatchingServer:
        svc.create_table([bytes.fromhex(h) for h in body.pdq], params)
        return svc.server()[1]

    try:
        srv = await run_in_threadpool(build)
    except EvidenceKeyError as e:
        raise _not_configured(e) from None
    return _info(srv)


@pm.get(
    "/table/root", tags=TAGS, summary="The current table's commitment", response_model=PmTableInfo
)
@scoped("match")
def table_root(request: Request) -> dict[str, Any]:
    return _info(_server(request))


@pm.get(
    "/table",
    tags=TAGS,
    summary="The blinded table (application/octet-stream)",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
@scoped("match")
def get_table(request: Request) -> Response:
    srv = _server(request)
    return Response(
        srv.table.to_bytes(),
        media_type="application/octet-stream",
        headers={"X-Lifeguard-Table-Root": srv.table.root},
    )


@pm.post(
    "/vouchers",
    tags=TAGS,
    summary="Hand over a voucher from a message (the answer says nothing about it)",
    response_model=PmVoucherOut,
    status_code=202,
)
@scoped("match")
async def post_voucher(request: Request, body: PmVoucherIn) -> dict[str, Any]:
    svc = _service(request)
    try:
        data = base64.b64decode(body.voucher, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(422, "invalid_voucher", "voucher is not valid base64") from None
    try:
        await run_in_threadpool(svc.receive, body.account_id, data)
    except EvidenceKeyError as e:
        raise _not_configured(e) from None
    return {"received": True}


@pm.get(
    "/accounts/{account_id}",
    tags=TAGS,
    summary="What the server may know about an account",
    response_model=PmAccountOut,
)
@scoped("admin")
def account(
    request: Request, account_id: Annotated[str, Path(min_length=1, max_length=256)]
) -> dict[str, Any]:
    try:
        rep = _service(request).report(account_id)
    except EvidenceKeyError as e:
        raise _not_configured(e) from None
    return {
        "account_id": rep.account_id,
        "received": rep.received,
        "opened": rep.opened,
        "threshold": rep.threshold,
        "threshold_reached": rep.threshold_reached,
        "actionable": rep.actionable,
        "matches": [
            {
                "voucher_id": m.voucher_id,
                "pdq": m.pdq,
                "quality": m.quality,
                "distance": m.distance,
                "listed_index": m.listed_index,
                "associated_data": base64.b64encode(m.associated_data).decode(),
            }
            for m in rep.matches
        ],
        "readable_not_counted": rep.readable_not_counted,
        "synthetic_identified": rep.synthetic_identified,
    }
