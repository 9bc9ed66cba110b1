"""Engine and session handling. SQLite (embedded, default) or PostgreSQL by URL; schema via Alembic."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from lifeguard.settings import Settings, get_settings
from lifeguard.store.models import Revision

MIGRATIONS = Path(__file__).parent / "migrations"
#: PostgreSQL advisory lock key held while migrating ("lifeguar" as an integer).
MIGRATION_LOCK_KEY = 0x6C69666567756172


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for ``url``. On SQLite, writers begin with ``BEGIN IMMEDIATE``; a ``read_only``
    engine begins deferred transactions, which under WAL read a consistent snapshot without taking
    the write lock (so reads never wait for a long import)."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy own transactions (BEGIN is emitted below), WAL for concurrent readers.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front: no deadlock between two upgrading readers.
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision. Safe when several replicas start at once:
    on PostgreSQL a transaction-scoped advisory lock lets one migrate while the others wait (and then
    find nothing to do); SQLite serialises the writers itself."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")


class Database:
    """An engine plus a session factory. ``Database.open(settings)`` migrates on first use."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessionmaker = sessionmaker(engine, expire_on_commit=False)
        self._read_engine: Engine | None = None
        self._read_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        settings: Settings | None = None,
        *,
        url: str | None = None,
        run_migrations: bool = True,
    ) -> Database:
        settings = settings or get_settings()
        engine = make_engine(url or settings.resolved_database_url)
        if run_migrations:
            migrate(engine)
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        with self.sessionmaker() as s, s.begin():
            yield s

    @property
    def read_engine(self) -> Engine:
        """The engine for read-only work (a separate deferred-transaction engine on SQLite)."""
        if self.dialect != "sqlite" or self.engine.url.database in (None, "", ":memory:"):
            return self.engine
        with self._read_lock:
            if self._read_engine is None:
                self._read_engine = make_engine(
                    self.engine.url.render_as_string(hide_password=False), read_only=True
                )
            return self._read_engine

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reads: one consistent snapshot that never holds the write lock. Objects
        loaded stay usable after it ends (nothing is written, so ending it commits nothing)."""
        with Session(self.read_engine, expire_on_commit=False) as s, s.begin():
            yield s

    def dispose(self) -> None:
        self.engine.dispose()
        if self._read_engine is not None:
            self._read_engine.dispose()


def bump_revision(session: Session) -> int:
    """Lock the revision row and return the next revision (ordered by commit). On PostgreSQL the
    bump is also announced (``NOTIFY lifeguard_revision``), delivered when the transaction commits."""
    from lifeguard.matching.notify import notify_revision  # here: matching imports this module

    row = session.execute(
        select(Revision).where(Revision.id == 1).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        session.add(Revision(id=1, value=1))
        session.flush()
        rev = 1
    else:
        session.execute(update(Revision).where(Revision.id == 1).values(value=Revision.value + 1))
        session.flush()
        rev = int(session.execute(select(Revision.value).where(Revision.id == 1)).scalar_one())
    notify_revision(session, rev)
    return rev


def current_revision(session: Session) -> int:
    v = session.execute(select(Revision.value).where(Revision.id == 1)).scalar_one_or_none()
    return int(v or 0)
