"""HMA 1.1 (OpenMediaMatch) compatible endpoints: ``/h`` hashing, ``/m`` matching, ``/c`` curation,
``/status``. Request and response shapes follow facebook/ThreatExchange
``hasher-matcher-actioner/src/OpenMediaMatch/blueprints/{hashing,matching,curation}.py`` and their
tests; differences are listed in docs/api.md. Unlike HMA, every ``/h``, ``/m`` and ``/c`` route
needs an API key. Errors are problem documents that also carry HMA's ``message`` member.

Content ids: HMA keeps one "content" with several signals; lifeguard keeps one entry per signal.
A content id here is an entry id; adding media returns the id of its first (PDQ) entry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import random
import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete, select
from starlette.datastructures import UploadFile

from lifeguard.api.models import HmaBankRatio
from lifeguard.api.problems import Problem
from lifeguard.api.routes_v1 import fetch_url, hash_upload, read_upload
from lifeguard.api.routing import GuardedRoute, public, scoped
from lifeguard.api.state import AppState, check_content_id, get_state, record_match
from lifeguard.banks import BankInfo, EntryInfo
from lifeguard.banks.service import BANK_NAME_RE
from lifeguard.errors import Conflict, InvalidSignal, LifeguardError, NotFound
from lifeguard.matching import MatchResult
from lifeguard.signals.base import SIGNAL_TYPES, get_signal_type
from lifeguard.signals.hasher import MediaHashes

hma = APIRouter(route_class=GuardedRoute, tags=["hma"])

#: HMA's name for lifeguard's md5 on videos (python-threatexchange ``VideoMD5Signal``).
HMA_VIDEO_MD5 = "video_md5"
DISABLED_REASON = re.compile(r"^hma:disable_until_ts=(\d+)")


def _five_years_from_now() -> int:
    return int(time.time() + 365 * 5 * 86400)


# ------------------------------------------------------------------------------------ helpers
def _bad(msg: str) -> Problem:
    return Problem(400, "bad_request", msg)


def _content_types() -> dict[str, bool]:
    return {"photo": True, "video": "vpdq" in SIGNAL_TYPES}


def _signal_types_for(content_type: str, types: str | None) -> list[str]:
    default = ["pdq"] if content_type == "photo" else ["vpdq", HMA_VIDEO_MD5]
    allowed = (
        ["pdq", "md5", "sha256"]
        if content_type == "photo"
        else ["vpdq", HMA_VIDEO_MD5, "md5", "sha256"]
    )
    if types is None:
        return default
    out: list[str] = []
    for name in (t.strip() for t in types.split(",")):
        if not name:
            continue
        if name not in allowed:
            raise _bad(f"signal type '{name}' doesn't exist or is disabled")
        out.append(name)
    if not out:
        raise _bad("empty signal type selection")
    return out


def _content_type(name: str) -> str:
    enabled = _content_types().get(name)
    if enabled is None:
        raise _bad(f"no such content_type: '{name}'")
    if not enabled:
        raise _bad(f"content_type {name} is disabled")
    return name


def _signals_of(h: MediaHashes, names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for n in names:
        if n == "pdq" and h.pdq and h.kind == "image":
            out["pdq"] = h.pdq
        elif n == "vpdq" and h.kind == "video":
            from lifeguard.signals.video import to_threatexchange_json

            out["vpdq"] = to_threatexchange_json(h.vpdq)
        elif n in ("md5", HMA_VIDEO_MD5):
            out[n] = h.md5
        elif n == "sha256":
            out[n] = h.sha256
    return out


async def _hash_form(
    request: Request, st: AppState, types: str | None, *, listing: bool = False
) -> tuple[dict[str, str], MediaHashes]:
    """HMA ``hash_media_from_form_data``: exactly one file, its field named after a content type."""
    form = await request.form(max_files=2, max_fields=20)
    try:
        files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise _bad("Missing multipart/form-data file upload")
        if len(files) > 1:
            raise _bad("Only one file allowed per request")
        field, up = files[0]
        ct = _content_type(field)
        names = _signal_types_for(ct, types)
        data = await read_upload(st, up)
        h = await hash_upload(st, data, up.filename or field, listing_variants=listing)
        if ct == "video" and h.kind != "video":
            raise Problem(422, "media_error", "the 'video' field holds an image")
        if ct == "photo" and h.kind != "image":
            raise Problem(422, "media_error", "the 'photo' field holds a video")
        return _signals_of(h, names), h
    finally:
        await form.close()


async def _hash_url(
    st: AppState, url: str, content_type: str | None, types: str | None, *, listing: bool = False
) -> tuple[dict[str, str], MediaHashes]:
    data, name = await fetch_url(st, url)
    h = await hash_upload(st, data, name, listing_variants=listing)
    ct = (
        _content_type(content_type) if content_type else ("video" if h.kind == "video" else "photo")
    )
    return _signals_of(h, _signal_types_for(ct, types)), h


def _ratios(st: AppState) -> dict[int, float]:
    with st.keys.read_session() as s:  # no write lock on SQLite
        return {r.bank_id: r.enabled_ratio for r in s.execute(select(HmaBankRatio)).scalars()}


def _bank_json(b: BankInfo, ratios: dict[int, float]) -> dict[str, Any]:
    ratio = 0.0 if not b.enabled else ratios.get(b.id, 1.0)
    return {"name": b.name, "matching_enabled_ratio": ratio}


def _set_ratio(st: AppState, bank_id: int, ratio: float | None) -> None:
    with st.db.session() as s:
        s.execute(delete(HmaBankRatio).where(HmaBankRatio.bank_id == bank_id))
        if ratio is not None and 0.0 < ratio < 1.0:
            s.add(HmaBankRatio(bank_id=bank_id, enabled_ratio=ratio))


def _check_name(name: str) -> str:
    if not BANK_NAME_RE.match(name) or len(name) > 100:
        raise _bad(f"Bank names must be UPPER_WITH_UNDERSCORE: {name!r}")
    return name


def _check_ratio(r: float) -> float:
    if not 0.0 <= r <= 1.0:
        raise _bad("enabled_ratio must be between 0 and 1")
    return r


def _hma_bank(st: AppState, name: str) -> BankInfo:
    try:
        return st.banks.get_bank(name)
    except NotFound:
        raise Problem(404, "not_found", f"bank '{name}' not found") from None


def _entry(st: AppState, bank: BankInfo, content_id: int) -> EntryInfo:
    try:
        e = st.banks.get_entry(content_id)
    except NotFound:
        e = None
    if e is None or e.bank_id != bank.id or e.status == "removed":
        raise Problem(404, "not_found", f"content '{content_id}' not found")
    return e


def _disable_until(e: EntryInfo) -> int:
    if e.status == "active":
        return 0
    m = DISABLED_REASON.match(e.status_reason)
    return int(m.group(1)) if m else 1


def _lookup(
    st: AppState,
    signal: str,
    signal_type: str,
    *,
    seed: str | None,
    bypass_coinflip: bool,
    banks: set[str] | None,
    media: MediaHashes | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """HMA's ``lookup``: standing matches by bank, after the bank filter and the
    ``enabled_ratio`` coin flip. The reported matches go to the actions hook (``seed`` is HMA's
    content id)."""
    r = _match(st, signal, signal_type)
    if not r.matches and not r.suppressed:
        record_match(st, r, None, media)  # metrics only (the hook records nothing)
        return {}
    ratios = _ratios(st)  # a database read: only when there is something to filter
    coin = 0.0 if bypass_coinflip else random.Random(seed).random()
    out: dict[str, list[dict[str, Any]]] = {}
    reported = []
    for m in r.matches:
        if banks is not None and m.bank not in banks:
            continue
        if ratios.get(m.bank_id, 1.0) < coin:
            continue
        reported.append(m)
        out.setdefault(m.bank, []).append(
            {"bank_content_id": m.entry_id, "distance": str(m.distance)}
        )
    try:
        content_id = check_content_id(seed)
    except Problem:
        content_id = None  # HMA's seed is free text; only a usable one is passed on as the id
    record_match(st, dataclasses.replace(r, matches=reported), content_id, media)
    return out


def _match(st: AppState, signal: str, signal_type: str) -> MatchResult:
    matcher = st.fresh()
    try:
        return matcher.match_signals([(signal_type, signal)])
    except InvalidSignal as e:
        raise _bad(f"invalid signal: {e.message}") from None


def _banks_param(banks: str | None) -> set[str] | None:
    return set(banks.split(",")) if banks else None


# ------------------------------------------------------------------------------------ status
@hma.get("/status", response_class=PlainTextResponse, summary="HMA liveness/readiness")
@public
async def status(request: Request) -> PlainTextResponse:
    st = get_state(request)
    if not st.ready.is_set():
        return PlainTextResponse("INDEX-STALE", status_code=503)
    return PlainTextResponse("I-AM-ALIVE")


@hma.get("/status/live", response_class=PlainTextResponse, summary="HMA liveness")
@public
async def status_live() -> PlainTextResponse:
    return PlainTextResponse("I-AM-ALIVE")


# ------------------------------------------------------------------------------------ /h
@hma.get("/h/hash", summary="HMA: fetch a URL and hash it (needs URL fetching enabled)")
@scoped("hash")
async def h_hash_get(
    request: Request,
    url: str | None = None,
    content_type: str | None = None,
    types: str | None = None,
) -> dict[str, str]:
    if url is None:
        raise _bad("url is required")
    sig, _ = await _hash_url(get_state(request), url, content_type, types)
    return sig


@hma.post("/h/hash", summary="HMA: hash one uploaded file (field named photo or video)")
@scoped("hash", body="hma_content")
async def h_hash_post(request: Request, types: str | None = None) -> dict[str, str]:
    st = get_state(request)
    _require_multipart(request)
    sig, _ = await _hash_form(request, st, types)
    return sig


def _require_multipart(request: Request) -> None:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _bad("Missing multipart/form-data file upload")


# ------------------------------------------------------------------------------------ /m
@hma.get("/m/raw_lookup", summary="HMA: index lookup, content ids only")
@scoped("match")
def m_raw_lookup(
    request: Request,
    signal: Annotated[str, Query()],
    signal_type: Annotated[str, Query()],
    banks: str | None = None,
    include_distance: bool = False,
) -> dict[str, list[Any]]:
    st = get_state(request)
    r = _match(st, signal, signal_type)
    wanted = _banks_param(banks)
    hits = [
        m for m in (*r.matches, *r.suppressed, *r.allowed) if wanted is None or m.bank in wanted
    ]
    seen: set[int] = set()
    out: list[Any] = []
    for m in hits:
        if m.entry_id in seen:
            continue
        seen.add(m.entry_id)
        out.append(
            {"bank_content_id": m.entry_id, "distance": str(m.distance)}
            if include_distance
            else m.entry_id
        )
    return {"matches": out}


@hma.get("/m/lookup", summary="HMA: look up a hash (or a URL's media) by bank")
@scoped("match")
async def m_lookup_get(
    request: Request,
    url: str | None = None,
    content_type: str | None = None,
    types: str | None = None,
    signal: str | None = None,
    signal_type: str | None = None,
    banks: str | None = None,
    seed: str | None = None,
    bypass_coinflip: bool = False,
) -> dict[str, Any]:
    st = get_state(request)
    wanted = _banks_param(banks)
    if url:
        st.require_ready()
        hashes, h = await _hash_url(st, url, content_type, types)
        resp: dict[str, Any] = {}
        for st_name, value in hashes.items():
            resp[st_name] = await run_in_threadpool(
                functools.partial(
                    _lookup,
                    st,
                    value,
                    st_name,
                    seed=seed,
                    bypass_coinflip=bypass_coinflip,
                    banks=wanted,
                    media=h,
                )
            )
        if signal_type is not None:
            sel: dict[str, Any] = resp.get(signal_type, {})
            return sel
        return resp
    if not signal or not signal_type:
        raise _bad("Either url or both signal and signal_type are required")
    return await run_in_threadpool(
        lambda: _lookup(
            st, signal, signal_type, seed=seed, bypass_coinflip=bypass_coinflip, banks=wanted
        )
    )


@hma.post("/m/lookup", summary="HMA: hash an upload and look it up, by signal type and bank")
@scoped("match", body="hma_content")
async def m_lookup_post(
    request: Request,
    types: str | None = None,
    banks: str | None = None,
    seed: str | None = None,
    bypass_coinflip: bool = False,
) -> dict[str, Any]:
    st = get_state(request)
    st.require_ready()
    _require_multipart(request)
    hashes, h = await _hash_form(request, st, types)
    wanted = _banks_param(banks)
    resp: dict[str, Any] = {}
    for name, value in hashes.items():
        resp[name] = await run_in_threadpool(
            functools.partial(
                _lookup,
                st,
                value,
                name,
                seed=seed,
                bypass_coinflip=bypass_coinflip,
                banks=wanted,
                media=h,
            )
        )
    return resp


@hma.get("/m/index/status", summary="HMA: index status per signal type")
@scoped("match")
def m_index_status(request: Request, signal_type: str | None = None) -> dict[str, Any]:
    st = get_state(request)
    names = sorted(SIGNAL_TYPES)
    if signal_type is not None:
        if signal_type not in names:
            raise _bad(f"No such signal type '{signal_type}'")
        names = [signal_type]
    ready = st.ready.is_set()
    if ready:
        st.matcher.sync(force=True)
    m = st.matcher
    sizes = {
        "pdq": len(m.pdq),
        "md5": len(m.md5),
        "sha256": len(m.sha256),
        "vpdq": len(m._vpdq_values),
    }
    return {
        n: {
            "present": ready,
            "built_to": m.revision if ready else -1,
            "size": sizes.get(n, 0) if ready else 0,
        }
        for n in names
    }


@hma.post("/m/compare", summary="HMA: distance between pairs of hashes")
@scoped("match", body="json")
async def m_compare(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise _bad("Request input was not valid JSON") from None
    if not isinstance(data, dict):
        raise _bad("Request input was not a dict")
    out: dict[str, Any] = {}
    for name, pair in data.items():
        if not isinstance(pair, list):
            raise _bad(f"Comparison hashes for {name} was not a list")
        if len(pair) != 2:
            raise _bad("Comparison hash list length must be exactly 2")
        try:
            t = get_signal_type(name)
        except InvalidSignal:
            raise _bad(f"No such SignalType '{name}'") from None
        if t.name == "vpdq":
            raise _bad(f"{name} does not support hash comparison")
        try:
            a, b = t.validate(pair[0]), t.validate(pair[1])
        except InvalidSignal as e:
            raise _bad(f"Invalid {name} hash: {e.message}") from None
        d = t.compare(a, b)
        threshold = 31 if t.is_perceptual else 0
        out[name] = [d <= threshold, {"distance": d}]
    return out


# ------------------------------------------------------------------------------------ /c banks
class _BankCreate(BaseModel):
    name: str
    enabled_ratio: float | None = 1.0
    enabled: bool | None = None


class _BankUpdate(BaseModel):
    name: str | None = None
    enabled_ratio: float | None = None
    enabled: bool | None = None


class _Metadata(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    content_id: str | None = None
    content_uri: str | None = None
    json_data: dict[str, Any] | None = Field(default=None, alias="json")
    collab: dict[str, list[str]] | None = None


@hma.get("/c/banks", summary="HMA: list banks")
@scoped("bank:read")
def c_banks(request: Request) -> list[dict[str, Any]]:
    st = get_state(request)
    ratios = _ratios(st)
    return [_bank_json(b, ratios) for b in st.banks.list_banks()]


@hma.post("/c/banks", status_code=201, summary="HMA: create a bank")
@scoped("bank:write")
def c_bank_create(request: Request, body: _BankCreate) -> dict[str, Any]:
    st = get_state(request)
    name = _check_name(body.name)
    if body.enabled_ratio is not None:
        ratio = _check_ratio(body.enabled_ratio)
    elif body.enabled is not None:
        ratio = 1.0 if body.enabled else 0.0
    else:
        ratio = 1.0
    try:
        b = st.banks.create_bank(name, enabled=ratio > 0)
    except Conflict:
        raise Problem(403, "conflict", "Bank already exists") from None
    _set_ratio(st, b.id, ratio)
    return {"name": b.name, "matching_enabled_ratio": ratio}


@hma.get("/c/bank/{bank_name}", summary="HMA: one bank")
@scoped("bank:read")
def c_bank_get(request: Request, bank_name: str) -> dict[str, Any]:
    st = get_state(request)
    return _bank_json(_hma_bank(st, bank_name), _ratios(st))


@hma.put("/c/bank/{bank_name}", summary="HMA: rename, enable/disable, set enabled_ratio")
@scoped("bank:write")
def c_bank_update(request: Request, bank_name: str, body: _BankUpdate) -> dict[str, Any]:
    st = get_state(request)
    b = _hma_bank(st, bank_name)
    ratio: float | None = None
    if body.enabled is not None:
        ratio = 1.0 if body.enabled else 0.0
    if body.enabled_ratio is not None:
        ratio = _check_ratio(body.enabled_ratio)
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = _check_name(body.name)
    if ratio is not None:
        changes["enabled"] = ratio > 0
    try:
        b = st.banks.update_bank(b.id, **changes)
    except Conflict:
        raise Problem(403, "conflict", "Bank name already exists") from None
    if ratio is not None:
        _set_ratio(st, b.id, ratio)
    return _bank_json(b, _ratios(st))


@hma.delete("/c/bank/{bank_name}", summary="HMA: delete a bank (a missing bank is not an error)")
@scoped("bank:write")
def c_bank_delete(request: Request, bank_name: str) -> dict[str, str]:
    st = get_state(request)
    try:
        st.banks.delete_bank(bank_name, by=_who(request), reason="deleted through the HMA API")
    except (NotFound, LifeguardError) as e:
        if not isinstance(e, NotFound) and e.code != "invalid_field":
            raise
    return {"message": "Done"}


def _who(request: Request) -> str:
    key = getattr(request.state, "key", None)
    return f"api-key:{key.id}" if key is not None else ""


# ------------------------------------------------------------------------------------ /c content
def _metadata_from_json(raw: Any) -> _Metadata | None:
    if not isinstance(raw, dict):
        return None
    md = raw.get("metadata")
    if md is None:
        return None
    if not isinstance(md, dict):
        raise _bad("metadata should be a json object")
    try:
        return _Metadata(**md)
    except ValidationError as e:
        raise _bad(f"Invalid metadata: {e}") from None


def _add_signals(
    st: AppState,
    request: Request,
    bank: BankInfo,
    signals: dict[str, str],
    md: _Metadata | None,
    h: MediaHashes | None,
) -> dict[str, Any]:
    if not signals:
        raise _bad("No signals given")
    ext = (md.content_id or "") if md else ""
    src = (md.content_uri or "")[:256] if md else ""
    note = json.dumps(md.json_data, sort_keys=True) if md and md.json_data else ""
    ids: list[int] = []
    stored: dict[str, str] = {}
    for name, value in signals.items():
        if not isinstance(value, str):
            raise _bad(f"Invalid {name} signal: expected a string")
        try:
            t = get_signal_type(name)
            v = t.validate(value)
        except InvalidSignal as e:
            raise _bad(f"Invalid {name} signal: {e.message}") from None
        variants: dict[str, str] = {}
        quality = None
        if h is not None and t.name == "pdq" and h.pdq == v:
            variants = {x.name: x.pdq for x in h.listing_variants if x.pdq != h.pdq}
            quality = h.quality
        r = st.banks.add_entry(
            bank.id, t.name, v, external_id=ext, source=src, note=note, added_by=_who(request),
            quality=quality, variants=variants,
        )  # fmt: skip
        ids.append(r.entry.id)
        stored[name] = value if t.name == "vpdq" else v  # HMA echoes vPDQ as sent
    return {"id": ids[0], "signals": stored}


@hma.post(
    "/c/bank/{bank_name}/content",
    summary="HMA: add media (?url=... or a multipart file named photo/video) to a bank",
)
@scoped("bank:write", body="hma_content")
async def c_add_content(
    request: Request,
    bank_name: str,
    url: str | None = None,
    content_type: str | None = None,
    types: str | None = None,
) -> dict[str, Any]:
    st = get_state(request)
    bank = await run_in_threadpool(_hma_bank, st, bank_name)
    ct = request.headers.get("content-type", "")
    md: _Metadata | None = None
    if ct.startswith("application/json"):
        try:
            md = _metadata_from_json(await request.json())
        except ValueError:
            raise _bad("request body is not valid JSON") from None
    if url:
        signals, h = await _hash_url(st, url, content_type, types, listing=True)
    elif ct.startswith("multipart/form-data"):
        signals, h = await _hash_form(request, st, types, listing=True)
    else:
        raise _bad("Neither `url` nor multipart file upload was received")
    return await run_in_threadpool(_add_signals, st, request, bank, signals, md, h)


@hma.post("/c/bank/{bank_name}/signal", summary='HMA: add hashes directly, e.g. {"pdq": "..."}')
@scoped("bank:write", body="json")
async def c_add_signal(request: Request, bank_name: str) -> dict[str, Any]:
    st = get_state(request)
    bank = await run_in_threadpool(_hma_bank, st, bank_name)
    try:
        data = await request.json()
    except ValueError:
        raise _bad("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _bad("this endpoint expects a json object payload")
    return await run_in_threadpool(_add_signals, st, request, bank, data, None, None)


@hma.get("/c/bank/{bank_name}/content/{content_id}", summary="HMA: one banked content item")
@scoped("bank:read")
def c_get_content(
    request: Request,
    bank_name: str,
    content_id: int,
    signal_type: str | None = None,
    include_signals: bool = False,
) -> dict[str, Any]:
    st = get_state(request)
    bank = _hma_bank(st, bank_name)
    wanted: str | None = None
    if signal_type is not None:
        try:
            wanted = get_signal_type(signal_type).name
        except InvalidSignal:
            raise _bad(f"No such signal type '{signal_type}'") from None
    e = _entry(st, bank, content_id)
    out: dict[str, Any] = {
        "id": e.id,
        "disable_until_ts": _disable_until(e),
        "collab_metadata": {},
        "original_media_uri": e.source or None,
        "bank": _bank_json(bank, _ratios(st)),
    }
    if e.external_id or e.note or e.source:
        md: dict[str, Any] = {"content_id": e.external_id or None, "content_uri": e.source or None}
        try:
            md["json"] = json.loads(e.note) if e.note else None
        except ValueError:
            md["json"] = {"note": e.note}
        out["metadata"] = md
    if wanted is not None or include_signals:
        out["signals"] = {e.signal_type: e.value} if wanted in (None, e.signal_type) else {}
    return out


class _ContentUpdate(BaseModel):
    disable_until_ts: int | str | None = None


@hma.put("/c/bank/{bank_name}/content/{content_id}", summary="HMA: disable/enable a content item")
@scoped("bank:write")
def c_update_content(
    request: Request, bank_name: str, content_id: int, body: _ContentUpdate
) -> dict[str, Any]:
    st = get_state(request)
    bank = _hma_bank(st, bank_name)
    e = _entry(st, bank, content_id)
    if body.disable_until_ts is not None:
        try:
            ts = int(body.disable_until_ts)
        except ValueError:
            raise _bad(f"Invalid int: '{body.disable_until_ts}'") from None
        if ts < 0:
            raise _bad("disable_until_ts must be a non-negative integer")
        if ts > _five_years_from_now():
            raise _bad("disable_until_ts must be less than 5 years in the future")
        by = _who(request)
        if ts == 0 or ts <= int(time.time()):
            if e.status == "disabled":
                e = st.banks.enable_entry(e.id, by=by, reason="enabled through the HMA API")
        else:
            if e.status == "disabled":
                st.banks.enable_entry(e.id, by=by, reason="re-disabled through the HMA API")
            when = dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()
            e = st.banks.disable_entry(e.id, by=by, reason=f"hma:disable_until_ts={ts} ({when})")
    return {
        "id": e.id,
        "disable_until_ts": _disable_until(e),
        "collab_metadata": {},
        "original_media_uri": e.source or None,
        "bank": _bank_json(bank, _ratios(st)),
    }


@hma.delete("/c/bank/{bank_name}/content/{content_id}", summary="HMA: remove a content item")
@scoped("bank:write")
def c_delete_content(request: Request, bank_name: str, content_id: int) -> dict[str, int]:
    st = get_state(request)
    bank = _hma_bank(st, bank_name)
    try:
        e = st.banks.get_entry(content_id)
    except NotFound:
        return {"deleted": 0}
    if e.bank_id != bank.id or e.status == "removed":
        return {"deleted": 0}
    st.banks.remove_entry(e.id, by=_who(request), reason="deleted through the HMA API")
    return {"deleted": 1}


@hma.get("/c/signal_type", summary="HMA: signal types")
@scoped("bank:read")
def c_signal_types() -> list[dict[str, Any]]:
    return [{"name": n, "enabled_ratio": 1.0} for n in sorted(SIGNAL_TYPES)]


@hma.get("/c/content_type", summary="HMA: content types")
@scoped("bank:read")
def c_content_types() -> list[dict[str, Any]]:
    return [{"name": n, "enabled": e} for n, e in _content_types().items()]
