"""Reviewer accounts for the web UI: passwords, login sessions, and the wellness exposure counter.

* Passwords are hashed with scrypt (``hashlib.scrypt``, RFC 7914; N=2^14, r=8, p=1, 16-byte salt,
  32-byte key) and compared in constant time. The stored form is
  ``scrypt$<log2 N>$<r>$<p>$<salt b64>$<key b64>``, so parameters can be raised later.
* A login creates a server-side session: a random 32-byte token goes to the browser (HttpOnly,
  SameSite=Strict cookie); the database keeps only its SHA-256, an expiry and a per-session CSRF token.
* Logins, failed logins and logouts are written to the hash-chained audit log.
* ``record_reveal`` counts, per reviewer and UTC day, how many media items were revealed (shown
  unblurred); the UI shows the count on every page and prompts for a break past a threshold.

Tables are created by migration ``0007_reviewer_accounts``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import Boolean, Integer, String, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from lifeguard.errors import Conflict, LifeguardError, NotFound
from lifeguard.reports import audit
from lifeguard.reports.models import AuditRecord
from lifeguard.review.roles import Actor, Role
from lifeguard.store.db import Database
from lifeguard.store.models import Base, utcnow

# --------------------------------------------------------------------------- tables


class ReviewerAccount(Base):
    __tablename__ = "reviewer_account"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default=Role.REVIEWER.value)
    password_hash: Mapped[str] = mapped_column(String(256))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class ReviewerSession(Base):
    """A login session. ``token_hash`` is SHA-256 of the cookie token (the token itself is never
    stored); ``csrf_token`` must accompany every POST made in the session."""

    __tablename__ = "reviewer_session"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reviewer: Mapped[str] = mapped_column(String(64), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class ReviewerExposure(Base):
    """Media reveals per reviewer per UTC day (``day`` is ``YYYY-MM-DD``)."""

    __tablename__ = "reviewer_exposure"
    reviewer: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    reveals: Mapped[int] = mapped_column(Integer, default=0)


# --------------------------------------------------------------------------- errors and views


class AccountError(LifeguardError):
    """Bad account input (name, role, password). 400 over HTTP."""

    code = "invalid_account"


class LoginFailed(LifeguardError):
    """Unknown name, wrong password or a disabled account (deliberately not said which)."""

    code = "login_failed"


@dataclass(frozen=True)
class AccountView:
    name: str
    role: Role
    disabled: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None

    @property
    def actor(self) -> Actor:
        return Actor(self.name, self.role)


@dataclass(frozen=True)
class SessionInfo:
    """What a request learns from its session cookie."""

    actor: Actor
    csrf_token: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class NewSession:
    token: str  # goes into the cookie; only its hash is stored
    info: SessionInfo


# --------------------------------------------------------------------------- passwords

SCRYPT_LOG2_N = 14
SCRYPT_R = 8
SCRYPT_P = 1
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def hash_password(password: str) -> str:
    """scrypt with a fresh random salt; see the module docstring for the stored form."""
    if not (MIN_PASSWORD <= len(password) <= MAX_PASSWORD):
        raise AccountError(
            f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters; got {len(password)}"
        )
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=2**SCRYPT_LOG2_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        dklen=32,
        maxmem=64 * 1024 * 1024,
    )
    return f"scrypt${SCRYPT_LOG2_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time comparison; a malformed stored hash never verifies."""
    try:
        scheme, log_n, r, p, salt_b64, key_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        want = base64.b64decode(key_b64, validate=True)
        n_log, r_i, p_i = int(log_n), int(r), int(p)
        if not (10 <= n_log <= 20 and 1 <= r_i <= 32 and 1 <= p_i <= 16):
            return False
        got = hashlib.scrypt(
            password.encode("utf-8")[: MAX_PASSWORD * 4],
            salt=salt,
            n=2**n_log,
            r=r_i,
            p=p_i,
            dklen=len(want),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


# A hash to verify against when the account does not exist, so that unknown names take as long as
# wrong passwords (no account enumeration by timing).
_DUMMY_HASH = f"scrypt${SCRYPT_LOG2_N}${SCRYPT_R}${SCRYPT_P}${_b64(b'0' * 16)}${_b64(b'0' * 32)}"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _aware(t: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes (stored as UTC)."""
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def today(now: dt.datetime | None = None) -> str:
    return (now or utcnow()).astimezone(dt.UTC).strftime("%Y-%m-%d")


# --------------------------------------------------------------------------- service


class Accounts:
    """Reviewer accounts, sessions and exposure counters on one database."""

    def __init__(
        self,
        db: Database,
        *,
        session_ttl: dt.timedelta = dt.timedelta(hours=12),
        max_failures: int = 10,
        failure_window: dt.timedelta = dt.timedelta(minutes=15),
    ) -> None:
        self.db = db
        self.session_ttl = session_ttl
        #: After this many failed logins for one name within ``failure_window`` (counted in the
        #: audit log, so across replicas), further attempts are refused without checking.
        self.max_failures = max_failures
        self.failure_window = failure_window

    # ---- accounts

    def add(self, name: str, password: str, role: Role | str = Role.REVIEWER) -> AccountView:
        if not NAME_RE.match(name):
            raise AccountError(
                f"reviewer name {name!r} must be 1-64 characters of a-z, 0-9, '.', '_', '-' "
                "(lower case, starting with a letter or digit)"
            )
        try:
            r = Role(role)
        except ValueError:
            raise AccountError(
                f"role {role!r} is not one of {', '.join(x.value for x in Role)}"
            ) from None
        ph = hash_password(password)
        try:
            with self.db.session() as s:
                if s.get(ReviewerAccount, name) is not None:
                    raise Conflict(f"reviewer {name!r} already exists")
                acc = ReviewerAccount(
                    name=name, role=r.value, password_hash=ph, disabled=False, created_at=utcnow()
                )
                s.add(acc)
                s.flush()
                audit.record(
                    s,
                    actor="cli",
                    action="reviewer.add",
                    subject_type="reviewer",
                    subject_id=name,
                    details={"role": r.value},
                )
                return _view(acc)
        except IntegrityError:
            raise Conflict(f"reviewer {name!r} already exists") from None

    def get(self, name: str) -> AccountView:
        with self.db.read_session() as s:
            acc = s.get(ReviewerAccount, name)
            if acc is None:
                raise NotFound(f"no reviewer named {name!r}")
            return _view(acc)

    def all(self) -> list[AccountView]:
        with self.db.read_session() as s:
            rows = s.execute(select(ReviewerAccount).order_by(ReviewerAccount.name)).scalars()
            return [_view(a) for a in rows]

    def disable(self, name: str, *, actor: str = "cli") -> AccountView:
        """Disable the account and end all its sessions."""
        with self.db.session() as s:
            acc = s.get(ReviewerAccount, name, with_for_update=True)
            if acc is None:
                raise NotFound(f"no reviewer named {name!r}")
            acc.disabled = True
            s.execute(delete(ReviewerSession).where(ReviewerSession.reviewer == name))
            audit.record(
                s, actor=actor, action="reviewer.disable", subject_type="reviewer", subject_id=name
            )
            s.flush()
            return _view(acc)

    def set_password(self, name: str, password: str, *, actor: str = "cli") -> None:
        ph = hash_password(password)
        with self.db.session() as s:
            acc = s.get(ReviewerAccount, name, with_for_update=True)
            if acc is None:
                raise NotFound(f"no reviewer named {name!r}")
            acc.password_hash = ph
            s.execute(delete(ReviewerSession).where(ReviewerSession.reviewer == name))
            audit.record(
                s,
                actor=actor,
                action="reviewer.password",
                subject_type="reviewer",
                subject_id=name,
            )

    # ---- login sessions

    def login(
        self, name: str, password: str, *, client: str = "", now: dt.datetime | None = None
    ) -> NewSession:
        """Check the password and open a session. Both outcomes are audited
        (``reviewer.login`` / ``reviewer.login_failed``). Raises :class:`LoginFailed`."""
        t = now or utcnow()
        if self._recent_failures(name[:64], t) >= self.max_failures:
            audit.append(
                self.db,
                actor=f"reviewer:{name[:64]}" if name else "reviewer:?",
                action="reviewer.login_failed",
                subject_type="reviewer",
                subject_id=name[:64],
                details={"reason": "throttled", "client": client[:64]},
                now=t,
            )
            raise LoginFailed(
                f"too many failed logins for this name; try again in "
                f"{int(self.failure_window.total_seconds() // 60)} minutes"
            )
        with self.db.read_session() as s:
            acc = s.get(ReviewerAccount, name) if len(name) <= 64 else None
            stored = acc.password_hash if acc is not None else _DUMMY_HASH
            disabled = acc.disabled if acc is not None else True
            role = acc.role if acc is not None else Role.REVIEWER.value
        ok = verify_password(password, stored) and acc is not None and not disabled
        if not ok:
            reason = (
                "unknown_account" if acc is None else ("disabled" if disabled else "wrong_password")
            )
            audit.append(
                self.db,
                actor=f"reviewer:{name[:64]}" if name else "reviewer:?",
                action="reviewer.login_failed",
                subject_type="reviewer",
                subject_id=name[:64],
                details={"reason": reason, "client": client[:64]},
                now=t,
            )
            raise LoginFailed("unknown reviewer, wrong password, or a disabled account")
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = t + self.session_ttl
        actor = Actor(name, Role(role))
        with self.db.session() as s:
            s.add(
                ReviewerSession(
                    token_hash=_token_hash(token),
                    reviewer=name,
                    csrf_token=csrf,
                    created_at=t,
                    expires_at=expires,
                )
            )
            s.execute(
                update(ReviewerAccount).where(ReviewerAccount.name == name).values(last_login_at=t)
            )
            # Expired sessions of this reviewer are dropped on each login (the table stays small).
            s.execute(
                delete(ReviewerSession).where(
                    ReviewerSession.reviewer == name, ReviewerSession.expires_at < t
                )
            )
            audit.record(
                s,
                actor=actor.audit_name,
                action="reviewer.login",
                subject_type="reviewer",
                subject_id=name,
                details={"client": client[:64]},
                now=t,
            )
        return NewSession(token, SessionInfo(actor, csrf, expires))

    def _recent_failures(self, name: str, now: dt.datetime) -> int:
        """Failed logins for ``name`` since the last success, within the failure window."""
        since = now - self.failure_window
        with self.db.read_session() as s:
            rows = s.execute(
                select(AuditRecord.action)
                .where(
                    AuditRecord.subject_type == "reviewer",
                    AuditRecord.subject_id == name,
                    AuditRecord.action.in_(("reviewer.login", "reviewer.login_failed")),
                    AuditRecord.time >= since,
                )
                .order_by(AuditRecord.seq.desc())
                .limit(self.max_failures)
            ).scalars()
            n = 0
            for action in rows:
                if action == "reviewer.login":
                    break
                n += 1
            return n

    def session(self, token: str | None, *, now: dt.datetime | None = None) -> SessionInfo | None:
        """The session a cookie token belongs to, or None (unknown, expired, account disabled)."""
        if not token or len(token) > 128:
            return None
        t = now or utcnow()
        with self.db.read_session() as s:
            row = s.get(ReviewerSession, _token_hash(token))
            if row is None or _aware(row.expires_at) <= t:
                return None
            acc = s.get(ReviewerAccount, row.reviewer)
            if acc is None or acc.disabled:
                return None
            return SessionInfo(
                Actor(acc.name, Role(acc.role)), row.csrf_token, _aware(row.expires_at)
            )

    def logout(self, token: str | None) -> None:
        if not token:
            return
        with self.db.session() as s:
            row = s.get(ReviewerSession, _token_hash(token))
            if row is None:
                return
            s.delete(row)
            audit.record(
                s,
                actor=f"reviewer:{row.reviewer}",
                action="reviewer.logout",
                subject_type="reviewer",
                subject_id=row.reviewer,
            )

    # ---- wellness: exposure counter

    def record_reveal(
        self, session: Session, reviewer: str, *, now: dt.datetime | None = None
    ) -> int:
        """Count one reveal for ``reviewer`` today inside the caller's transaction; returns
        today's count after it."""
        day = today(now)
        for _attempt in range(3):
            q = (
                select(ReviewerExposure)
                .where(ReviewerExposure.reviewer == reviewer, ReviewerExposure.day == day)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            row = session.execute(q).scalar_one_or_none()
            if row is not None:
                row.reveals = int(row.reveals) + 1
                session.flush()
                return int(row.reveals)
            try:
                with session.begin_nested():
                    session.add(ReviewerExposure(reviewer=reviewer, day=day, reveals=1))
                return 1
            except IntegrityError:  # another reveal created today's row first
                continue
        raise Conflict("could not count the reveal (concurrent updates); try again")

    def exposure_today(self, reviewer: str, *, now: dt.datetime | None = None) -> int:
        with self.db.read_session() as s:
            row = s.get(ReviewerExposure, (reviewer, today(now)))
            return int(row.reveals) if row is not None else 0


def _view(a: ReviewerAccount) -> AccountView:
    return AccountView(
        name=a.name,
        role=Role(a.role),
        disabled=bool(a.disabled),
        created_at=_aware(a.created_at),
        last_login_at=_aware(a.last_login_at) if a.last_login_at is not None else None,
    )
