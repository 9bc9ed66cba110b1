"""Alembic environment: runs on the connection lifeguard hands over (see ``lifeguard.store.db.migrate``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from lifeguard.store.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    conn = config.attributes.get("connection")
    if conn is None:  # `alembic` command line: use sqlalchemy.url from the config
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
        with engine.begin() as c:
            context.configure(connection=c, target_metadata=target_metadata, render_as_batch=True)
            context.run_migrations()
        return
    context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
    context.run_migrations()


run()
