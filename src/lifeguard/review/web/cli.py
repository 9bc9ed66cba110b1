"""``lifeguard reviewer add|list|disable|password``: reviewer accounts for the review web UI
(cli.py registers ``reviewer_app``)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lifeguard.errors import LifeguardError
from lifeguard.review.accounts import Accounts
from lifeguard.review.roles import Role
from lifeguard.settings import get_settings
from lifeguard.store.db import Database

reviewer_app = typer.Typer(
    help="Reviewer accounts for the review web UI (/review).", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)


def _accounts() -> Accounts:
    return Accounts(Database.open(get_settings()))


def _fail(e: LifeguardError) -> typer.Exit:
    err.print(f"[red]error[/] ({e.code}): {e.message}")
    return typer.Exit(2)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    pw: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return pw


@reviewer_app.command("add")
def reviewer_add(
    name: Annotated[str, typer.Argument(help="Account name (a-z, 0-9, '.', '_', '-').")],
    role: Annotated[Role, typer.Option(help="reviewer, senior or admin.")] = Role.REVIEWER,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first stdin line.")
    ] = False,
) -> None:
    """Create a reviewer account (the password is asked for twice unless --password-stdin)."""
    try:
        acc = _accounts().add(name, _read_password(password_stdin), role)
    except LifeguardError as e:
        raise _fail(e) from None
    console.print(f"added reviewer {acc.name} ({acc.role.value})")


@reviewer_app.command("password")
def reviewer_password(
    name: Annotated[str, typer.Argument()],
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
) -> None:
    """Set a new password (ends the reviewer's open sessions)."""
    try:
        _accounts().set_password(name, _read_password(password_stdin))
    except LifeguardError as e:
        raise _fail(e) from None
    console.print(f"password of {name} changed")


@reviewer_app.command("list")
def reviewer_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List reviewer accounts."""
    rows = _accounts().all()
    if as_json:
        data = [
            {
                "name": a.name,
                "role": a.role.value,
                "disabled": a.disabled,
                "created_at": a.created_at.isoformat(),
                "last_login_at": a.last_login_at.isoformat() if a.last_login_at else None,
            }
            for a in rows
        ]
        sys.stdout.write(json.dumps(data) + "\n")
        return
    t = Table("name", "role", "disabled", "last login")
    for a in rows:
        t.add_row(
            a.name,
            a.role.value,
            "yes" if a.disabled else "",
            a.last_login_at.strftime("%Y-%m-%d %H:%M") if a.last_login_at else "",
        )
    console.print(t)


@reviewer_app.command("disable")
def reviewer_disable(name: Annotated[str, typer.Argument()]) -> None:
    """Disable an account and end its sessions."""
    try:
        _accounts().disable(name)
    except LifeguardError as e:
        raise _fail(e) from None
    console.print(f"disabled reviewer {name}")
