"""Typer commands for ``lifeguard serve`` and ``lifeguard key create|list|revoke``.

Wire into the main CLI with::

    from lifeguard.api.cli_commands import key_app, serve_cmd
    app.command("serve")(serve_cmd)
    app.add_typer(key_app, name="key")
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from lifeguard.api.keys import KeyStore

key_app = typer.Typer(
    help="API keys for the HTTP service: create, list, revoke.", no_args_is_help=True
)


def serve_cmd(
    host: Annotated[
        str | None, typer.Option(help="Address (default LIFEGUARD_API_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default LIFEGUARD_API_PORT or 8080).")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="uvicorn worker processes.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML settings file (see docs/api.md).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the HTTP API (uvicorn)."""
    from lifeguard.api.serve import serve

    try:
        serve(config=config, host=host, port=port, workers=workers, log_level=log_level)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


_DURATION = re.compile(r"^(\d+)([smhdw])$")


def parse_expiry(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``30d``, ``12h``, ``90m``, ``2w`` from now, or an ISO 8601 time (UTC if no zone)."""
    now = now or dt.datetime.now(dt.UTC)
    m = _DURATION.match(text.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        secs = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
        return now + dt.timedelta(seconds=n * secs)
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--expires {text!r}: use e.g. 30d, 12h or 2027-01-31T00:00:00Z") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _store() -> KeyStore:
    from lifeguard.api.config import load_settings
    from lifeguard.api.keys import KeyStore
    from lifeguard.store.db import Database

    settings, _ = load_settings()
    return KeyStore(Database.open(settings))


@key_app.command("create")
def key_create(
    scope: Annotated[
        list[str],
        typer.Option("--scope", "-s", help="hash, match, bank:read, bank:write, admin (repeat)."),
    ],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    expires: Annotated[str | None, typer.Option(help="30d, 12h, ... or an ISO time.")] = None,
    rate: Annotated[
        float | None, typer.Option(help="Requests/second for this key (0: unlimited).")
    ] = None,
) -> None:
    """Create a key. The token is printed once; only its digest is stored."""
    try:
        exp = parse_expiry(expires) if expires else None
        store = _store()
        scopes = [s for item in scope for s in item.split(",") if s.strip()]
        info, token = store.create(
            name, scopes, expires_at=exp, created_by="cli", rate_limit_per_s=rate
        )
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({"token": token, "key": info.to_json()}, indent=2))
    typer.echo("Store the token now: it cannot be shown again.", err=True)


@key_app.command("list")
def key_list() -> None:
    """List keys (never their secrets), one JSON object per line."""
    for k in _store().list():
        typer.echo(json.dumps(k.to_json()))


@key_app.command("revoke")
def key_revoke(key_id: Annotated[str, typer.Argument(help="The key id (lg_<id>_...).")]) -> None:
    """Revoke a key (running servers stop accepting it within LIFEGUARD_API_KEY_CACHE_TTL_S)."""
    from lifeguard.errors import NotFound

    kid = key_id.removeprefix("lg_").split("_", 1)[0]
    try:
        info = _store().revoke(kid)
    except NotFound as e:
        typer.echo(f"error: {e.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(info.to_json()))
