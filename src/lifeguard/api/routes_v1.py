"""The versioned ``/v1`` API plus health, readiness and metrics."""

from __future__ import annotations

import functools
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import UploadFile as StarletteUploadFile

from lifeguard.api.fetch import FetchError, FetchPolicy, fetch
from lifeguard.api.problems import Problem, from_lifeguard_error
from lifeguard.api.routing import GuardedRoute, public, scoped
from lifeguard.api.schemas import (
    AddOut,
    BankCreate,
    BankOut,
    BankPatch,
    BatchItemOut,
    BatchOut,
    EntryCreate,
    EntryOut,
    EntryPageOut,
    EntryPatch,
    ImportOut,
    IndexStatusOut,
    KeyCreate,
    KeyCreatedOut,
    KeyOut,
    MatchResultOut,
    MatchSignalsIn,
    MatchUrlIn,
)
from lifeguard.api.state import AppState, check_content_id, get_state, record_match
from lifeguard.api.streams import BodyLines, export_stream
from lifeguard.banks import FORMATS, export_bank, import_entries
from lifeguard.banks.media import add_hashes
from lifeguard.errors import LifeguardError, NotFound
from lifeguard.matching import MatchResult
from lifeguard.signals.hasher import MediaHashes, hash_bytes

root = APIRouter(route_class=GuardedRoute)
v1 = APIRouter(prefix="/v1", route_class=GuardedRoute)

ENTRY_STATUS_ACTIONS = {
    "active": "enable_entry",
    "disabled": "disable_entry",
    "removed": "remove_entry",
}
EXPORT_MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "hma": "application/x-ndjson",
    "json": "application/json",
    "plain": "text/plain; charset=utf-8",
    "te": "text/plain; charset=utf-8",
}


# ------------------------------------------------------------------------------------ helpers
def _who(request: Request) -> str:
    key = getattr(request.state, "key", None)
    return f"api-key:{key.id}" if key is not None else ""


async def read_upload(st: AppState, f: StarletteUploadFile) -> bytes:
    """The upload's bytes, refusing (413) one over ``max_file_bytes``. The body as a whole was
    already bounded while it arrived (see routing)."""
    limit = st.settings.max_file_bytes
    if f.size is not None and f.size > limit:
        raise Problem(
            413, "too_large", f"{f.filename or 'upload'}: over the limit of {limit:,} bytes"
        )
    data = await f.read(limit + 1)
    if len(data) > limit:
        raise Problem(
            413, "too_large", f"{f.filename or 'upload'}: over the limit of {limit:,} bytes"
        )
    return data


async def hash_upload(
    st: AppState,
    data: bytes,
    name: str,
    *,
    query_variants: bool = False,
    listing_variants: bool = False,
) -> MediaHashes:
    """Hash in a worker thread (decoding and PDQ are CPU-bound; the event loop stays free). At most
    ``hash_threads`` hash at once."""
    fn = functools.partial(
        hash_bytes,
        data,
        name,
        st.settings,
        query_variants=query_variants,
        listing_variants=listing_variants,
    )
    return await anyio.to_thread.run_sync(fn, limiter=st.hash_limiter)


def result_json(
    r: MatchResult, content_id: str | None, media: MediaHashes | None
) -> dict[str, Any]:
    d = r.to_json()
    d["content_id"] = content_id
    d["media"] = media.to_json() if media is not None else None
    return d


async def match_media(
    st: AppState, h: MediaHashes, content_id: str | None, variants: bool
) -> dict[str, Any]:
    st.require_ready()
    r = await run_in_threadpool(lambda: st.fresh().match_media(h, variants=variants))
    await run_in_threadpool(record_match, st, r, content_id, h)
    return result_json(r, content_id, h)


def fetch_policy(st: AppState) -> FetchPolicy:
    a = st.api
    if not a.url_fetch_enabled:
        raise Problem(
            403,
            "url_fetch_disabled",
            "fetching media by URL is disabled (LIFEGUARD_API_URL_FETCH_ENABLED)",
        )
    return FetchPolicy(
        allowed_hosts=tuple(a.url_fetch_allowed_hosts),
        max_bytes=st.settings.max_file_bytes,
        timeout_s=a.url_fetch_timeout_s,
        max_redirects=a.url_fetch_max_redirects,
        allow_http=a.url_fetch_allow_http,
        allow_loopback=a.UNSAFE_url_fetch_allow_loopback_for_tests,
    )


async def fetch_url(st: AppState, url: str) -> tuple[bytes, str]:
    policy = fetch_policy(st)
    try:
        got = await run_in_threadpool(fetch, url, policy)
    except FetchError as e:
        raise Problem(e.status, e.code, e.message) from None
    name = got.url.rsplit("/", 1)[-1].split("?", 1)[0] or "download"
    return got.data, name


def _entry_in_bank(st: AppState, bank: str, entry_id: int) -> Any:
    b = st.banks.get_bank(bank)
    e = st.banks.get_entry(entry_id)
    if e.bank_id != b.id:
        raise NotFound(f"bank {b.name!r} has no entry {entry_id}")
    return e


# ------------------------------------------------------------------------------------ health
@root.get("/healthz", tags=["health"], summary="Liveness: 200 while the process runs")
@public
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@root.get(
    "/readyz",
    tags=["health"],
    summary="Readiness: 503 until the index is loaded",
    responses={503: {"description": "index not loaded yet"}},
)
@public
async def readyz(request: Request) -> Response:
    st = get_state(request)
    if st.ready.is_set():
        return JSONResponse({"status": "ready", "revision": st.matcher.revision})
    body = {"status": "loading" if st.load_error is None else "failed", "error": st.load_error}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "2"})


@root.get(
    "/metrics",
    tags=["health"],
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
)
@scoped("admin")
async def metrics(request: Request) -> Response:
    st = get_state(request)
    if not st.api.metrics_enabled:
        raise Problem(404, "not_found", "metrics are disabled")
    return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# ------------------------------------------------------------------------------------ hashing
@v1.post("/hash", tags=["hashing"], summary="Hash an uploaded image or video")
@scoped("hash")
async def hash_media(
    request: Request,
    file: Annotated[UploadFile, File(description="The media file.")],
    variants: Annotated[bool, Query(description="Also return the query variants.")] = False,
) -> dict[str, Any]:
    st = get_state(request)
    data = await read_upload(st, file)
    h = await hash_upload(st, data, file.filename or "upload", query_variants=variants)
    return h.to_json()


# ------------------------------------------------------------------------------------ matching
@v1.post(
    "/match",
    tags=["matching"],
    summary="Hash an upload and match it against the banks",
    response_model=MatchResultOut,
)
@scoped("match")
async def match_upload(
    request: Request,
    file: Annotated[UploadFile, File(description="The media file.")],
    content_id: Annotated[
        str | None, Form(max_length=256, description="Your id for the content.")
    ] = None,
    variants: Annotated[bool, Query(description="Match dihedral/trimmed variants too.")] = True,
) -> dict[str, Any]:
    st = get_state(request)
    st.require_ready()
    content_id = check_content_id(content_id)
    data = await read_upload(st, file)
    h = await hash_upload(st, data, file.filename or "upload", query_variants=variants)
    return await match_media(st, h, content_id, variants)


@v1.post(
    "/match/batch",
    tags=["matching"],
    summary="Match several uploads; a bad file gets an error entry, not a failed batch",
    response_model=BatchOut,
)
@scoped("match")
async def match_batch(
    request: Request,
    files: Annotated[list[UploadFile], File(description="Media files (field repeated).")],
    content_ids: Annotated[
        list[str] | None, Form(description="Optional ids, one per file, in order.")
    ] = None,
    variants: Annotated[bool, Query()] = True,
) -> BatchOut:
    st = get_state(request)
    st.require_ready()
    if len(files) > st.api.max_batch_files:
        raise Problem(
            413, "too_many_files", f"{len(files)} files, at most {st.api.max_batch_files} per batch"
        )
    if content_ids is not None and len(content_ids) != len(files):
        raise Problem(
            422,
            "validation_error",
            f"{len(content_ids)} content_ids for {len(files)} files",
            errors=[{"loc": "body.content_ids", "detail": "one per file", "type": "value_error"}],
        )
    if content_ids is not None:
        content_ids = [check_content_id(x) or "" for x in content_ids]
    datas = [await read_upload(st, f) for f in files]

    async def one(i: int, out: list[BatchItemOut]) -> None:
        f = files[i]
        cid = (content_ids[i] or None) if content_ids else None
        name = f.filename or f"upload-{i}"
        try:
            h = await hash_upload(st, datas[i], name, query_variants=variants)
            res = await match_media(st, h, cid, variants)
            out[i] = BatchItemOut(filename=name, content_id=cid, result=MatchResultOut(**res))
        except LifeguardError as e:
            p = from_lifeguard_error(e)
            out[i] = BatchItemOut(
                filename=name,
                content_id=cid,
                error={"status": p.status, "code": p.code, "detail": p.detail},
            )

    results: list[BatchItemOut] = [BatchItemOut(filename="")] * len(files)
    async with anyio.create_task_group() as tg:
        for i in range(len(files)):
            tg.start_soon(one, i, results)
    return BatchOut(results=results)


@v1.post(
    "/match/signals",
    tags=["matching"],
    summary="Match hashes you computed yourself",
    response_model=MatchResultOut,
)
@scoped("match")
def match_signals(request: Request, body: MatchSignalsIn) -> dict[str, Any]:
    st = get_state(request)
    cid = check_content_id(body.content_id)
    matcher = st.fresh()
    r = matcher.match_signals([(s.signal_type, s.value) for s in body.signals])
    record_match(st, r, cid, None)
    return result_json(r, cid, None)


@v1.post(
    "/match/url",
    tags=["matching"],
    summary="Fetch media from an allow-listed URL and match it (off by default)",
    response_model=MatchResultOut,
)
@scoped("match")
async def match_url(request: Request, body: MatchUrlIn) -> dict[str, Any]:
    st = get_state(request)
    st.require_ready()
    cid = check_content_id(body.content_id)
    data, name = await fetch_url(st, body.url)
    h = await hash_upload(st, data, name, query_variants=body.variants)
    return await match_media(st, h, cid, body.variants)


@v1.get(
    "/index/status",
    tags=["matching"],
    summary="Index readiness, revision and sizes",
    response_model=IndexStatusOut,
)
@scoped("bank:read")
def index_status(request: Request) -> dict[str, Any]:
    st = get_state(request)
    if st.ready.is_set():
        st.matcher.sync(force=True)
    d = st.index_status()
    d["database_revision"] = st.banks.current_revision()
    return d


# ------------------------------------------------------------------------------------ banks
@v1.get("/banks", tags=["banks"], summary="List banks", response_model=list[BankOut])
@scoped("bank:read")
def list_banks(request: Request) -> list[BankOut]:
    return [BankOut.of(b) for b in get_state(request).banks.list_banks()]


@v1.post("/banks", tags=["banks"], summary="Create a bank", status_code=201, response_model=BankOut)
@scoped("bank:write")
def create_bank(request: Request, body: BankCreate) -> BankOut:
    b = get_state(request).banks.create_bank(**body.model_dump())
    return BankOut.of(b)


@v1.get("/banks/{name}", tags=["banks"], summary="One bank", response_model=BankOut)
@scoped("bank:read")
def get_bank(request: Request, name: str) -> BankOut:
    return BankOut.of(get_state(request).banks.get_bank(name))


@v1.patch("/banks/{name}", tags=["banks"], summary="Change a bank", response_model=BankOut)
@scoped("bank:write")
def patch_bank(request: Request, name: str, body: BankPatch) -> BankOut:
    changes = body.model_dump(exclude_unset=True)
    return BankOut.of(get_state(request).banks.update_bank(name, **changes))


@v1.delete(
    "/banks/{name}",
    tags=["banks"],
    summary="Delete a bank (soft: entries become tombstones)",
    response_model=BankOut,
)
@scoped("bank:write")
def delete_bank(
    request: Request, name: str, reason: Annotated[str, Query(max_length=10_000)] = ""
) -> BankOut:
    return BankOut.of(get_state(request).banks.delete_bank(name, by=_who(request), reason=reason))


# ------------------------------------------------------------------------------------ entries
@v1.get(
    "/banks/{name}/entries",
    tags=["entries"],
    summary="Entries of a bank, by id (keyset paging)",
    response_model=EntryPageOut,
)
@scoped("bank:read")
def list_entries(
    request: Request,
    name: str,
    status: Annotated[str | None, Query(pattern="^(active|disabled|removed)$")] = None,
    signal_type: str | None = None,
    after_id: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> EntryPageOut:
    page = get_state(request).banks.list_entries(
        name, status=status, signal_type=signal_type, after_id=after_id, limit=limit
    )
    return EntryPageOut(
        items=[EntryOut.of(e) for e in page.items],
        total=page.total,
        next_after_id=page.next_after_id,
    )


@v1.post(
    "/banks/{name}/entries",
    tags=["entries"],
    summary="Add a signal (idempotent)",
    response_model=AddOut,
    responses={200: {"description": "already listed"}, 201: {"description": "added"}},
)
@scoped("bank:write")
def add_entry(request: Request, name: str, body: EntryCreate) -> JSONResponse:
    st = get_state(request)
    r = st.banks.add_entry(name, added_by=_who(request), **body.model_dump())
    out = AddOut(
        entry=EntryOut.of(r.entry),
        created=r.created,
        duplicate=r.duplicate,
        reactivated=r.reactivated,
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if r.created else 200)


@v1.post(
    "/banks/{name}/entries/media",
    tags=["entries"],
    summary="List uploaded media: its PDQ (+ extra hashes) and MD5; the media is not kept",
    status_code=201,
    response_model=list[AddOut],
)
@scoped("bank:write")
async def add_entry_media(
    request: Request,
    name: str,
    file: Annotated[UploadFile, File()],
    external_id: Annotated[str, Form(max_length=256)] = "",
    note: Annotated[str, Form(max_length=10_000)] = "",
    source: Annotated[str, Form(max_length=256)] = "",
    signal_types: Annotated[list[str] | None, Form()] = None,
) -> list[AddOut]:
    st = get_state(request)
    await run_in_threadpool(st.banks.get_bank, name)  # 404 before hashing
    data = await read_upload(st, file)
    h = await hash_upload(st, data, file.filename or "upload", listing_variants=True)
    results = await run_in_threadpool(
        functools.partial(
            add_hashes,
            st.banks,
            name,
            h,
            signal_types=signal_types or None,
            external_id=external_id or (file.filename or ""),
            note=note,
            source=source,
            added_by=_who(request),
        )
    )
    return [
        AddOut(
            entry=EntryOut.of(r.entry),
            created=r.created,
            duplicate=r.duplicate,
            reactivated=r.reactivated,
        )
        for r in results
    ]


@v1.get(
    "/banks/{name}/entries/{entry_id}",
    tags=["entries"],
    summary="One entry",
    response_model=EntryOut,
)
@scoped("bank:read")
def get_entry(request: Request, name: str, entry_id: int) -> EntryOut:
    return EntryOut.of(_entry_in_bank(get_state(request), name, entry_id))


@v1.patch(
    "/banks/{name}/entries/{entry_id}",
    tags=["entries"],
    summary="Disable, enable or remove an entry",
    response_model=EntryOut,
)
@scoped("bank:write")
def patch_entry(request: Request, name: str, entry_id: int, body: EntryPatch) -> EntryOut:
    st = get_state(request)
    _entry_in_bank(st, name, entry_id)
    fn = getattr(st.banks, ENTRY_STATUS_ACTIONS[body.status])
    return EntryOut.of(fn(entry_id, by=_who(request), reason=body.reason))


@v1.delete(
    "/banks/{name}/entries/{entry_id}",
    tags=["entries"],
    summary="Remove an entry (tombstone kept for audit)",
    response_model=EntryOut,
)
@scoped("bank:write")
def delete_entry(
    request: Request,
    name: str,
    entry_id: int,
    reason: Annotated[str, Query(max_length=10_000)] = "",
) -> EntryOut:
    st = get_state(request)
    _entry_in_bank(st, name, entry_id)
    return EntryOut.of(st.banks.remove_entry(entry_id, by=_who(request), reason=reason))


# ------------------------------------------------------------------------------------ import/export
IMPORT_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The hash list: streamed as the body (text/csv, application/x-ndjson, ...) "
        "or as the `file` field of a multipart form.",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


@v1.post(
    "/banks/{name}/import",
    tags=["banks"],
    summary="Import a hash list (streamed, atomic, idempotent; rejected lines listed)",
    response_model=ImportOut,
    openapi_extra=IMPORT_BODY_DOC,
)
@scoped("bank:write", body="import")
async def import_bank(
    request: Request,
    name: str,
    format: Annotated[
        str | None, Query(description=f"One of {', '.join(FORMATS)}; else detected.")
    ] = None,
    signal_type: Annotated[str | None, Query(description="For rows that do not say.")] = None,
    filename: Annotated[
        str | None, Query(description="Source name (its extension helps detection).")
    ] = None,
    source: Annotated[str, Query(max_length=256)] = "",
    categories: Annotated[list[str] | None, Query()] = None,
) -> ImportOut:
    st = get_state(request)
    await run_in_threadpool(st.banks.get_bank, name)  # 404 before reading the body
    ct = request.headers.get("content-type", "")

    def run(src: Any, src_name: str) -> Any:
        return import_entries(
            st.banks,
            name,
            src,
            format=format,
            signal_type=signal_type,
            added_by=_who(request),
            source_label=source,
            categories=categories or (),
            name=src_name,
        )

    if ct.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=20)
        try:
            up = form.get("file")
            if up is None or isinstance(up, str):
                raise Problem(
                    422,
                    "validation_error",
                    "multipart import needs a file in the 'file' field",
                    errors=[{"loc": "body.file", "detail": "field required", "type": "missing"}],
                )
            r = await anyio.to_thread.run_sync(run, up.file, filename or up.filename or "upload")
        finally:
            await form.close()
    else:
        src_name = filename or "upload"
        lines = BodyLines(request.stream().__aiter__(), src_name)
        r = await anyio.to_thread.run_sync(run, lines, src_name)
    return ImportOut.of(r)


@v1.get(
    "/banks/{name}/export",
    tags=["banks"],
    summary="Stream a bank's entries in an import format",
    response_class=StreamingResponse,
    responses={200: {"content": {t.split(";")[0]: {} for t in EXPORT_MEDIA_TYPES.values()}}},
)
@scoped("bank:read")
async def export(
    request: Request,
    name: str,
    format: Annotated[str, Query(description=f"One of {', '.join(FORMATS)}.")] = "csv",
    signal_type: str | None = None,
    include_disabled: bool = False,
    include_removed: bool = False,
) -> StreamingResponse:
    st = get_state(request)
    if format not in FORMATS:
        raise Problem(
            422,
            "validation_error",
            f"format: {format!r} is not one of {', '.join(FORMATS)}",
            errors=[
                {"loc": "query.format", "detail": f"one of {', '.join(FORMATS)}", "type": "enum"}
            ],
        )
    b = await run_in_threadpool(st.banks.get_bank, name)

    def run(sink: Any) -> object:
        return export_bank(
            st.banks,
            b.id,
            sink,
            format=format,
            signal_type=signal_type,
            include_disabled=include_disabled,
            include_removed=include_removed,
        )

    body = await export_stream(run)
    ext = {"plain": "txt", "te": "txt", "hma": "jsonl"}.get(format, format)
    return StreamingResponse(
        body,
        media_type=EXPORT_MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{b.name}.{ext}"'},
    )


# ------------------------------------------------------------------------------------ keys
@v1.get("/keys", tags=["keys"], summary="List API keys", response_model=list[KeyOut])
@scoped("admin")
def list_keys(request: Request) -> list[dict[str, object]]:
    return [k.to_json() for k in get_state(request).keys.list()]


@v1.post(
    "/keys",
    tags=["keys"],
    summary="Create an API key (its token is shown once)",
    status_code=201,
    response_model=KeyCreatedOut,
)
@scoped("admin")
def create_key(request: Request, body: KeyCreate) -> dict[str, object]:
    try:
        info, token = get_state(request).keys.create(
            body.name,
            body.scopes,
            expires_at=body.expires_at,
            created_by=_who(request),
            rate_limit_per_s=body.rate_limit_per_s,
        )
    except ValueError as e:
        raise Problem(422, "validation_error", str(e)) from None
    return {"key": info.to_json(), "token": token}


@v1.delete("/keys/{key_id}", tags=["keys"], summary="Revoke an API key", response_model=KeyOut)
@scoped("admin")
def revoke_key(request: Request, key_id: str) -> dict[str, object]:
    return get_state(request).keys.revoke(key_id).to_json()
