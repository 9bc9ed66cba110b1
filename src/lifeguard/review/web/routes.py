"""The review web UI: server-rendered pages (Jinja2) made interactive with htmx, under ``/review``.

``mount(app)`` adds the router and the static files to the FastAPI app. Sessions and CSRF:
a login sets an HttpOnly, SameSite=Strict cookie holding a random token (the database keeps its
hash); every POST must carry the session's CSRF token, as the ``X-CSRF-Token`` header (htmx sends it
from ``hx-headers`` on ``<body>``) or as the ``csrf_token`` form field (plain form posts). The login
form itself uses a double-submit token (a cookie and a hidden field that must agree).

Wellness: media is shown as a server-made blurred greyscale preview; the original is served only
after an audited POST ``/review/items/{id}/reveal`` by the same reviewer (``review.media_reveal``
in the audit log), which also counts towards the reviewer's exposure for the day.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import enum
import hmac
import io
import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from lifeguard.errors import Conflict, Forbidden, LifeguardError, NotFound
from lifeguard.reports import audit
from lifeguard.reports.models import AuditRecord
from lifeguard.review.accounts import Accounts, LoginFailed, SessionInfo
from lifeguard.review.roles import Actor, Role
from lifeguard.review.web import charts
from lifeguard.review.web.media import PreviewCache, blurred_preview
from lifeguard.settings import Settings
from lifeguard.store.db import Database
from lifeguard.store.models import utcnow

HERE = Path(__file__).parent
COOKIE = "lg_review"
LOGIN_COOKIE = "lg_review_login"
#: How long after a reveal the original may be fetched (page reloads within it show it again).
REVEAL_GRANT = dt.timedelta(minutes=15)
REVEAL_ACTION = "review.media_reveal"
DECISION_LABELS = {
    "confirm": "Confirm",
    "false_positive": "False positive",
    "escalate": "Escalate",
    "no_violation": "No violation",
}
PRIORITY_LABELS = {1: "P1 child at risk now", 2: "P2 CSAM", 3: "P3 other"}

CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/review", include_in_schema=False)


# --------------------------------------------------------------------------- state and auth


@dataclass
class WebState:
    db: Database
    settings: Settings
    accounts: Accounts
    service: Any  # lifeguard.review.service.ReviewService (imported lazily)
    previews: PreviewCache


def _web(request: Request) -> WebState:
    ws: WebState | None = getattr(request.app.state, "review_web", None)
    if ws is None or ws.db is not request.app.state.lg.db:
        from lifeguard.review.service import ReviewService

        st = request.app.state.lg
        ws = WebState(
            db=st.db,
            settings=st.settings,
            accounts=Accounts(
                st.db, session_ttl=dt.timedelta(hours=st.settings.review_session_hours)
            ),
            service=ReviewService(st.db, st.settings),
            previews=PreviewCache(),
        )
        request.app.state.review_web = ws
    return ws


class LoginRequired(Exception):
    pass


class CsrfFailed(Exception):
    pass


@dataclass
class Ctx:
    """What every page handler gets: the web state, the logged-in reviewer and the CSRF token."""

    ws: WebState
    session: SessionInfo
    request: Request

    @property
    def actor(self) -> Actor:
        return self.session.actor

    def exposure(self) -> int:
        return self.ws.accounts.exposure_today(self.actor.id)

    def page(self, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        n = self.exposure()
        limit = self.ws.settings.review_break_after_reveals
        base = {
            "me": self.actor,
            "csrf": self.session.csrf_token,
            "exposure": n,
            "break_after": limit,
            "needs_break": n >= limit,
            "is_senior": self.actor.role.at_least(Role.SENIOR),
            "priority_labels": PRIORITY_LABELS,
            "decision_labels": DECISION_LABELS,
            "now": utcnow(),
            "fmt_age": fmt_age,
            "aware": aware,
            "show": show,
        }
        base.update(ctx)
        return _render(self.request, name, base, status)


def _render(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
    resp = templates.TemplateResponse(request, name, ctx, status_code=status)
    resp.headers.update(SECURITY_HEADERS)
    return resp


def current(request: Request) -> Ctx:
    ws = _web(request)
    info = ws.accounts.session(request.cookies.get(COOKIE))
    if info is None:
        raise LoginRequired()
    return Ctx(ws, info, request)


def current_post(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
) -> Ctx:
    """``current`` plus the CSRF check (header from htmx, or the form field)."""
    ctx = current(request)
    sent = request.headers.get("x-csrf-token") or csrf_token
    if not sent or not hmac.compare_digest(sent.encode(), ctx.session.csrf_token.encode()):
        raise CsrfFailed()
    return ctx


CtxDep = Annotated[Ctx, Depends(current)]
PostDep = Annotated[Ctx, Depends(current_post)]


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _status_of(e: LifeguardError) -> int:
    if isinstance(e, NotFound):
        return 404
    if isinstance(e, Conflict):
        return 409
    if isinstance(e, Forbidden):
        return 403
    return 422


def _error(ctx: Ctx, e: LifeguardError, *, case_id: int | None = None) -> HTMLResponse:
    """An error as a flash message (htmx: retargeted to ``#flash``) or as a full page."""
    status = _status_of(e)
    if isinstance(e, Conflict):
        message = (
            "Someone else decided or changed this case while you were looking at it. "
            "Nothing was saved. Reload the case to see its current state."
        )
    else:
        message = e.message
    if _is_htmx(ctx.request):
        resp = _render(
            ctx.request,
            "_flash.html",
            {"message": message, "code": e.code, "case_id": case_id, "kind": "error"},
            status,
        )
        resp.headers["HX-Retarget"] = "#flash"
        resp.headers["HX-Reswap"] = "innerHTML"
        return resp
    return ctx.page("error.html", status, message=message, code=e.code, case_id=case_id)


def fmt_age(t: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if t is None:
        return ""
    secs = int(((now or utcnow()) - aware(t)).total_seconds())
    neg = secs < 0
    secs = abs(secs)
    if secs < 3600:
        s = f"{secs // 60} min"
    elif secs < 86400 * 2:
        s = f"{secs // 3600} h {secs % 3600 // 60:02d} min"
    else:
        s = f"{secs // 86400} d {secs % 86400 // 3600} h"
    return f"in {s}" if neg else s


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def show(v: Any) -> str:
    """A value of a history/decision/appeal row as short text (JSON for structures, ISO times
    to the second)."""
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False, separators=(", ", ": "), default=str)
    if isinstance(v, str) and _ISO.match(v):
        return v[:19].replace("T", " ")
    if isinstance(v, dt.datetime):
        return aware(v).strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _safe_next(nxt: str | None) -> str:
    if nxt and nxt.startswith("/review") and not nxt.startswith("//") and "\\" not in nxt:
        return nxt
    return "/review/"


# --------------------------------------------------------------------------- login


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/review/") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    resp = _render(request, "login.html", {"login_csrf": token, "next": _safe_next(next)})
    _set_login_cookie(request, resp, token)
    return resp


def _set_login_cookie(request: Request, resp: Response, token: str) -> None:
    resp.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/review",
    )


@router.post("/login", response_model=None)
def login(
    request: Request,
    name: Annotated[str, Form(max_length=256)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    login_csrf: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/review/",
) -> Response:
    ws = _web(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    token = secrets.token_urlsafe(24)
    if not cookie or not login_csrf or not hmac.compare_digest(cookie, login_csrf):
        resp = _render(
            request,
            "login.html",
            {
                "login_csrf": token,
                "next": _safe_next(next),
                "error": "The login form expired; please try again.",
            },
            403,
        )
        _set_login_cookie(request, resp, token)
        return resp
    client = request.client.host if request.client else ""
    try:
        new = ws.accounts.login(name.strip(), password, client=client)
    except LoginFailed as e:
        resp = _render(
            request,
            "login.html",
            {
                "login_csrf": token,
                "next": _safe_next(next),
                "name": name,
                "error": e.message[0].upper() + e.message[1:] + "."
                if e.message.startswith("too many")
                else "Wrong name or password (or the account is disabled).",
            },
            401,
        )
        _set_login_cookie(request, resp, token)
        return resp
    done = RedirectResponse(_safe_next(next), status_code=303)
    done.set_cookie(
        COOKIE,
        new.token,
        max_age=int(ws.accounts.session_ttl.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/review",
    )
    done.delete_cookie(LOGIN_COOKIE, path="/review")
    return done


@router.post("/logout")
def logout(ctx: PostDep) -> RedirectResponse:
    ctx.ws.accounts.logout(ctx.request.cookies.get(COOKIE))
    resp = RedirectResponse("/review/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/review")
    if _is_htmx(ctx.request):
        resp.headers["HX-Redirect"] = "/review/login"
    return resp


# --------------------------------------------------------------------------- queue and cases

QUEUE_TABS = ("open", "assigned", "escalated", "appealed", "decided", "closed", "all")


@router.get("/", response_class=HTMLResponse)
def queue_page(ctx: CtxDep, status: str = "open") -> HTMLResponse:
    if status not in QUEUE_TABS:
        return _error(ctx, NotFound(f"no queue named {status!r}"))
    try:
        rows = ctx.ws.service.queue(ctx.actor, status=status, limit=200)
    except LifeguardError as e:
        return _error(ctx, e)
    return ctx.page("queue.html", rows=rows, tab=status, tabs=QUEUE_TABS, title="Queue")


@router.get("/appeals", response_class=HTMLResponse)
def appeals_page(ctx: CtxDep) -> HTMLResponse:
    try:
        rows = ctx.ws.service.queue(ctx.actor, status="appealed", limit=200)
    except LifeguardError as e:
        return _error(ctx, e)
    return ctx.page("queue.html", rows=rows, tab="appealed", tabs=QUEUE_TABS, title="Appeals")


def _case_ctx(ctx: Ctx, case: Any) -> dict[str, Any]:
    return {
        "case": case,
        "decisions": [_as_dict(d) for d in case.decisions],
        "appeals": [_as_dict(a) for a in case.appeals],
        "reports": [_as_dict(r) for r in case.reports],
        "le_reports": [_as_dict(r) for r in case.le_reports],
        "history": [_as_dict(h) for h in case.history],
        "decision": case.decision,
        "decided_by": case.decided_by,
        "can_decide_appeal": case.status == "appealed" and case.decided_by != ctx.actor.id,
        "can_le_report": ctx.actor.role.at_least(Role.SENIOR) and case.decision == "confirm",
        "title": f"Case {case.id}",
    }


def _case_response(ctx: Ctx, case: Any, *, flash: str = "") -> HTMLResponse:
    data = _case_ctx(ctx, case)
    if _is_htmx(ctx.request):
        return ctx.page("_case.html", flash=flash, **data)
    return ctx.page("case.html", flash=flash, **data)


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(ctx: CtxDep, case_id: int) -> HTMLResponse:
    try:
        case = ctx.ws.service.get_case(case_id)
    except LifeguardError as e:
        return _error(ctx, e, case_id=case_id)
    return ctx.page("case.html", **_case_ctx(ctx, case))


def _after_post(ctx: Ctx, case_id: int, call: Callable[[], Any], flash: str) -> Response:
    try:
        case = call()
    except LifeguardError as e:
        return _error(ctx, e, case_id=case_id)
    if not _is_htmx(ctx.request):
        return RedirectResponse(f"/review/cases/{case_id}", status_code=303)
    return _case_response(ctx, case, flash=flash)


@router.post("/cases/{case_id}/assign", response_model=None)
def assign(ctx: PostDep, case_id: int, version: Annotated[int, Form()]) -> Response:
    return _after_post(
        ctx,
        case_id,
        lambda: ctx.ws.service.assign(case_id, ctx.actor, expected_version=version),
        "Assigned to you.",
    )


@router.post("/cases/{case_id}/decide", response_model=None)
def decide(
    ctx: PostDep,
    case_id: int,
    decision: Annotated[str, Form(max_length=32)],
    version: Annotated[int, Form()],
    note: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    label = DECISION_LABELS.get(decision, decision)
    return _after_post(
        ctx,
        case_id,
        lambda: ctx.ws.service.decide(
            case_id, ctx.actor, decision, expected_version=version, note=note
        ),
        f"Decision recorded: {label}.",
    )


@router.post("/cases/{case_id}/appeal-decision", response_model=None)
def appeal_decision(
    ctx: PostDep,
    case_id: int,
    upheld: Annotated[str, Form(pattern="^(yes|no)$")],
    version: Annotated[int, Form()],
    note: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    up = upheld == "yes"
    return _after_post(
        ctx,
        case_id,
        lambda: ctx.ws.service.decide_appeal(
            case_id, ctx.actor, upheld=up, expected_version=version, note=note
        ),
        "Appeal upheld (the decision is reversed)."
        if up
        else "Appeal rejected (the decision stands).",
    )


@router.post("/cases/{case_id}/le-report", response_model=None)
def le_report(
    ctx: PostDep,
    case_id: int,
    kind: Annotated[str, Form(pattern="^(ncmec|nca)$")],
    classification: Annotated[str, Form(pattern="^(|A1|A2|B1|B2)$")] = "",
) -> Response:
    try:
        rep = ctx.ws.service.le_report(
            case_id, ctx.actor, kind, classification=classification or None
        )
        case = ctx.ws.service.get_case(case_id)
    except LifeguardError as e:
        return _error(ctx, e, case_id=case_id)
    msg = f"{kind.upper()} report {rep.id}: {rep.status}" + (
        f" (reference {rep.reference})" if rep.reference else ""
    )
    if rep.error:
        msg += f"; {rep.error}"
    if not _is_htmx(ctx.request):
        return RedirectResponse(f"/review/cases/{case_id}", status_code=303)
    return _case_response(ctx, case, flash=msg)


# --------------------------------------------------------------------------- media (wellness)


def _item_of_case(ctx: Ctx, case_id: int, item_id: int) -> Any:
    case = ctx.ws.service.get_case(case_id)
    for it in case.items:
        if it.id == item_id:
            return it
    raise NotFound(f"case {case_id} has no item {item_id}")


def _revealed_items(ctx: Ctx, item_ids: list[int]) -> set[int]:
    """Items this reviewer revealed within the grant window (their originals may be shown)."""
    if not item_ids:
        return set()
    since = utcnow() - REVEAL_GRANT
    with ctx.ws.db.read_session() as s:
        rows = s.execute(
            select(AuditRecord.subject_id).where(
                AuditRecord.subject_type == "review_case_item",
                AuditRecord.subject_id.in_([str(i) for i in item_ids]),
                AuditRecord.action == REVEAL_ACTION,
                AuditRecord.actor == ctx.actor.audit_name,
                AuditRecord.time >= since,
            )
        ).scalars()
        return {int(x) for x in rows}


@router.get("/items/{item_id}/preview")
def item_preview(ctx: CtxDep, item_id: int) -> Response:
    """The blurred greyscale preview (never the original)."""
    data = ctx.ws.previews.get(item_id)
    if data is None:
        try:
            raw, mime = ctx.ws.service.item_media(item_id, actor=ctx.actor)
        except LifeguardError as e:
            return Response(e.message, status_code=_status_of(e), headers=SECURITY_HEADERS)
        data = blurred_preview(raw, mime)
        ctx.ws.previews.put(item_id, data)
    return Response(data, media_type="image/jpeg", headers=SECURITY_HEADERS)


@router.post("/items/{item_id}/reveal", response_model=None)
def item_reveal(ctx: PostDep, item_id: int, case_id: Annotated[int, Form()]) -> Response:
    """Audited reveal: ``review.media_reveal`` (actor, case, item) and one more exposure today."""
    try:
        item = _item_of_case(ctx, case_id, item_id)
        if not item.has_media:
            raise NotFound(f"item {item_id} has no media")
        with ctx.ws.db.session() as s:
            n = ctx.ws.accounts.record_reveal(s, ctx.actor.id)
            audit.record(
                s,
                actor=ctx.actor.audit_name,
                action=REVEAL_ACTION,
                subject_type="review_case_item",
                subject_id=item_id,
                details={"case_id": case_id, "exposure_today": n},
            )
    except LifeguardError as e:
        return _error(ctx, e, case_id=case_id)
    if not _is_htmx(ctx.request):
        return RedirectResponse(f"/review/cases/{case_id}#item-{item_id}", status_code=303)
    limit = ctx.ws.settings.review_break_after_reveals
    return ctx.page(
        "_revealed.html",
        item=item,
        case_id=case_id,
        exposure=n,
        needs_break=n >= limit,
        break_now=n == limit or (n > limit and (n - limit) % 10 == 0),
    )


@router.get("/items/{item_id}/original")
def item_original(ctx: CtxDep, item_id: int) -> Response:
    """The original media, only to a reviewer who revealed it (audited) within the grant window."""
    if item_id not in _revealed_items(ctx, [item_id]):
        return Response(
            "Reveal this item first (POST /review/items/{id}/reveal).",
            status_code=403,
            headers=SECURITY_HEADERS,
        )
    try:
        raw, mime = ctx.ws.service.item_media(item_id, actor=ctx.actor)
    except LifeguardError as e:
        return Response(e.message, status_code=_status_of(e), headers=SECURITY_HEADERS)
    headers = dict(SECURITY_HEADERS)
    headers["Content-Disposition"] = "inline"
    return Response(raw, media_type=mime, headers=headers)


# --------------------------------------------------------------------------- transparency


def _period(start: str | None, end: str | None) -> tuple[dt.datetime, dt.datetime]:
    today = utcnow().date()
    try:
        e = dt.date.fromisoformat(end) if end else today
        s = dt.date.fromisoformat(start) if start else e - dt.timedelta(days=30)
    except ValueError:
        raise LifeguardError(
            "start and end must be dates (YYYY-MM-DD)", code="invalid_period"
        ) from None
    if s > e:
        raise LifeguardError("start is after end", code="invalid_period")
    t0 = dt.datetime.combine(s, dt.time(), tzinfo=dt.UTC)
    t1 = dt.datetime.combine(e + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return t0, t1


def _report(ctx: Ctx, start: str | None, end: str | None) -> dict[str, Any]:
    from lifeguard.reports.transparency import transparency_report

    t0, t1 = _period(start, end)
    rep = transparency_report(ctx.ws.db, t0, t1)
    return _as_dict(rep)


@router.get("/transparency", response_class=HTMLResponse)
def transparency_page(
    ctx: CtxDep, start: str | None = None, end: str | None = None
) -> HTMLResponse:
    try:
        t0, t1 = _period(start, end)
        rep = _report(ctx, start, end)
    except LifeguardError as e:
        return _error(ctx, e)
    qs = f"start={t0.date().isoformat()}&end={(t1 - dt.timedelta(days=1)).date().isoformat()}"
    return ctx.page(
        "transparency.html",
        title="Transparency",
        report=rep,
        charts=charts.charts_for(rep),
        tables=charts.tables_for(rep),
        start=t0.date().isoformat(),
        end=(t1 - dt.timedelta(days=1)).date().isoformat(),
        qs=qs,
    )


@router.get("/transparency.json")
def transparency_json(ctx: CtxDep, start: str | None = None, end: str | None = None) -> Response:
    try:
        rep = _report(ctx, start, end)
    except LifeguardError as e:
        return Response(e.message, status_code=_status_of(e))
    return Response(
        json.dumps(rep, indent=2, default=str),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="transparency.json"'},
    )


@router.get("/transparency.csv")
def transparency_csv(ctx: CtxDep, start: str | None = None, end: str | None = None) -> Response:
    try:
        rep = _report(ctx, start, end)
    except LifeguardError as e:
        return Response(e.message, status_code=_status_of(e))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["metric", "key", "value"])
    for metric, key, value in charts.flatten(rep):
        w.writerow([metric, key, value])
    return Response(
        buf.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="transparency.csv"'},
    )


# --------------------------------------------------------------------------- helpers, mounting


def _as_dict(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if hasattr(obj, "model_dump"):
        d: dict[str, Any] = obj.model_dump()
        return d
    return {"value": obj}


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return _as_dict(v)
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    return v


def mount(app: FastAPI) -> None:
    """Add the review UI to ``app`` (routes under /review, static files under /review/static)."""

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        target = "/review/login?next=" + quote(request.url.path, safe="/")
        if request.method != "GET" or _is_htmx(request):
            return Response(
                "Log in first.",
                status_code=401,
                headers={"HX-Redirect": target, **SECURITY_HEADERS},
            )
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(CsrfFailed)
    async def _csrf_failed(request: Request, exc: CsrfFailed) -> Response:
        return Response(
            "Missing or wrong CSRF token: reload the page and try again.",
            status_code=403,
            headers=SECURITY_HEADERS,
        )

    app.include_router(router)
    app.mount("/review/static", StaticFiles(directory=str(HERE / "static")), name="review-static")
