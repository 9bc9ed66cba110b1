from __future__ import annotations

import threading

from lifeguard.store.db import Database, bump_revision, current_revision


def test_migrations_create_schema_and_revisions_are_ordered(db: Database) -> None:
    with db.session() as s:
        assert current_revision(s) == 0
        assert bump_revision(s) == 1
    with db.session() as s:
        assert bump_revision(s) == 2
        assert current_revision(s) == 2


def test_concurrent_revision_bumps_are_unique(db: Database) -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            with db.session() as s:
                r = bump_revision(s)
            with lock:
                seen.append(r)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 41))


def test_migrate_twice_is_harmless(db: Database) -> None:
    again = Database.open(url=str(db.engine.url.render_as_string(hide_password=False)))
    with again.session() as s:
        assert current_revision(s) == 0
    again.dispose()


def test_concurrent_first_start_migrations(tmp_path: object, db_url: str) -> None:
    """Several replicas starting at once on an empty database: all succeed, one schema."""
    from sqlalchemy import inspect

    from lifeguard.store.db import make_engine, migrate

    errors: list[BaseException] = []

    def start() -> None:
        eng = make_engine(db_url)
        try:
            migrate(eng)
        except BaseException as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)
        finally:
            eng.dispose()

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.daemon = True
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "concurrent migrations deadlocked"
    assert errors == []
    eng = make_engine(db_url)
    assert {"bank", "entry", "revision"} <= set(inspect(eng).get_table_names())
    eng.dispose()
