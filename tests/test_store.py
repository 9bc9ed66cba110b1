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
