"""Typer commands of the actions room. Wire into ``lifeguard.cli`` with ``register(app)``, which adds
``lifeguard worker``, ``lifeguard action add|list|update|enable|disable|remove``,
``lifeguard deliveries list|replay`` and ``lifeguard events list``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from lifeguard.actions.events import list_events
from lifeguard.actions.outbox import list_deliveries, replay_dead, replay_delivery
from lifeguard.actions.rules import (
    UNSET,
    VARIANT_KINDS,
    create_rule,
    delete_rule,
    list_rules,
    new_secret,
    seal_secrets,
    update_rule,
)
from lifeguard.actions.worker import Worker, WorkerConfig
from lifeguard.errors import LifeguardError
from lifeguard.settings import get_settings
from lifeguard.store.db import Database

action_app = typer.Typer(
    help="Action rules: which webhooks to call on a match in a bank.", no_args_is_help=True
)
deliveries_app = typer.Typer(
    help="Webhook deliveries: the outbox and its dead letters (list, replay).",
    no_args_is_help=True,
)
events_app = typer.Typer(help="Recorded match events (hashes and ids only).", no_args_is_help=True)

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="jsonl or table")]


def _fail(message: str, code: str = "error") -> None:
    err.print(f"[red]error[/red] ({code}): {message}", markup=True, highlight=False)
    raise typer.Exit(2)


@contextmanager
def _db() -> Iterator[Database]:
    try:
        db = Database.open(get_settings())
    except LifeguardError as e:
        _fail(e.message, e.code)
        raise  # unreachable; for type checkers
    except SQLAlchemyError as e:
        _fail(f"cannot open the database: {e.__class__.__name__}: {e}".splitlines()[0], "database")
        raise
    try:
        yield db
    except LifeguardError as e:
        _fail(e.message, e.code)
    finally:
        db.dispose()


def _check_format(fmt: str) -> str:
    if fmt not in ("jsonl", "table"):
        _fail(f"--format must be jsonl or table, not {fmt!r}")
    return fmt


def _jsonl(obj: dict[str, Any]) -> None:
    out.print(json.dumps(obj, sort_keys=False), markup=False, highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------ worker


def worker_cmd(
    timeout_s: Annotated[
        float, typer.Option(envvar="LIFEGUARD_WEBHOOK_TIMEOUT_S", help="Deadline per POST.")
    ] = 10.0,
    lease_s: Annotated[
        float,
        typer.Option(
            envvar="LIFEGUARD_WEBHOOK_LEASE_S",
            help="Claim lease; a crashed worker's deliveries are retried after this long.",
        ),
    ] = 60.0,
    concurrency: Annotated[
        int, typer.Option(envvar="LIFEGUARD_WEBHOOK_CONCURRENCY", help="Parallel POSTs.")
    ] = 4,
    poll_s: Annotated[
        float, typer.Option(envvar="LIFEGUARD_WEBHOOK_POLL_S", help="Idle poll interval.")
    ] = 1.0,
    max_attempts: Annotated[
        int,
        typer.Option(
            envvar="LIFEGUARD_WEBHOOK_MAX_ATTEMPTS", help="Attempts before a dead letter."
        ),
    ] = 15,
    backoff_base_s: Annotated[
        float, typer.Option(envvar="LIFEGUARD_WEBHOOK_BACKOFF_BASE_S")
    ] = 10.0,
    backoff_max_s: Annotated[
        float, typer.Option(envvar="LIFEGUARD_WEBHOOK_BACKOFF_MAX_S")
    ] = 3600.0,
    block_private: Annotated[
        bool,
        typer.Option(
            "--block-private/--allow-private",
            envvar="LIFEGUARD_WEBHOOK_BLOCK_PRIVATE",
            help="Refuse loopback/private/link-local receiver addresses (SSRF guard).",
        ),
    ] = False,
    ca_file: Annotated[
        str | None,
        typer.Option(
            envvar="LIFEGUARD_WEBHOOK_CA_FILE",
            help="PEM CA bundle to trust for https receivers (default: the system store).",
        ),
    ] = None,
    drain: Annotated[
        bool, typer.Option(help="Exit once nothing is due instead of polling forever.")
    ] = False,
    cases: Annotated[
        bool,
        typer.Option(
            help="Also turn new match events into review cases each round (lifeguard case ingest)."
        ),
    ] = True,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Deliver queued webhooks (at least once). Stops cleanly on SIGINT/SIGTERM."""
    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        _fail(f"--log-level: {log_level!r} is not DEBUG, INFO, WARNING or ERROR")
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
    try:
        cfg = WorkerConfig(
            timeout_s=timeout_s,
            lease_s=lease_s,
            concurrency=concurrency,
            poll_s=poll_s,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
            block_private=block_private,
            ca_file=ca_file,
        )
    except LifeguardError as e:
        _fail(e.message, e.code)
        return
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        logging.getLogger("lifeguard.actions.worker").info("signal %d: stopping", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    with _db() as db:
        jobs: list[Callable[[], int]] = []
        if cases:
            from lifeguard.review.service import ReviewService

            jobs.append(ReviewService(db, get_settings()).ingest_match_events)
        days = get_settings().match_event_retention_days
        if days > 0:
            jobs.append(retention_job(db, days))
        stats = Worker(db, cfg, jobs=jobs).run(stop, drain=drain)
    err.print(
        f"claimed {stats.claimed}, delivered {stats.delivered}, retried {stats.retried}, "
        f"dead {stats.dead}, leases lost {stats.lost_leases}",
        markup=False,
        highlight=False,
    )


# ------------------------------------------------------------------------------ rules

BankArg = Annotated[str, typer.Argument(help="Bank name or id.")]


def _bank_ref(bank: str) -> int | str:
    return int(bank) if bank.isdigit() else bank


@action_app.command("add")
def action_add(
    bank: BankArg,
    url: Annotated[str, typer.Argument(help="http(s) URL to POST to.")],
    secret: Annotated[
        str | None, typer.Option(help="Signing secret (default: a new random one, printed once).")
    ] = None,
    name: Annotated[str, typer.Option(help="A label.")] = "",
    max_distance: Annotated[
        int | None, typer.Option(help="Only matches with distance <= this.")
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option(help=f"Only these variant kinds (repeatable): {', '.join(VARIANT_KINDS)}."),
    ] = None,
    category: Annotated[
        list[str] | None, typer.Option(help="Only matches with one of these categories.")
    ] = None,
    disabled: Annotated[bool, typer.Option(help="Create it disabled.")] = False,
    by: Annotated[str, typer.Option(help="Who adds it.")] = "",
) -> None:
    """Call URL on every match in BANK (prints the rule with its secret, once)."""
    with _db() as db:
        r = create_rule(
            db,
            _bank_ref(bank),
            url,
            secret=secret,
            name=name,
            enabled=not disabled,
            max_distance=max_distance,
            variants=variant or (),
            categories=category or (),
            created_by=by,
        )
        _jsonl(r.to_json(with_secret=True))


@action_app.command("seal-secrets")
def action_seal_secrets() -> None:
    """Seal stored webhook secrets with LIFEGUARD_SECRETS_KEY (clear ones, and those under an older
    key after a rotation). New and changed secrets are sealed automatically once the key is set."""
    with _db() as db:
        counts = seal_secrets(db)
    _jsonl(counts)


@action_app.command("list")
def action_list(
    bank: Annotated[str | None, typer.Option(help="Only this bank's rules.")] = None,
    fmt: FormatOpt = "table",
) -> None:
    """List rules (secrets are never shown)."""
    _check_format(fmt)
    with _db() as db:
        rules = list_rules(db, _bank_ref(bank) if bank is not None else None)
    if fmt == "jsonl":
        for r in rules:
            _jsonl(r.to_json())
        return
    t = Table("id", "bank", "name", "url", "enabled", "max dist", "variants", "categories")
    for r in rules:
        t.add_row(
            str(r.id),
            r.bank_name,
            r.name,
            r.url,
            "yes" if r.enabled else "no",
            "-" if r.max_distance is None else str(r.max_distance),
            ",".join(r.variants) or "all",
            ",".join(r.categories) or "all",
        )
    out.print(t)


@action_app.command("update")
def action_update(
    rule_id: Annotated[int, typer.Argument(help="Rule id.")],
    url: Annotated[str | None, typer.Option(help="New URL.")] = None,
    secret: Annotated[str | None, typer.Option(help="New signing secret.")] = None,
    rotate_secret: Annotated[
        bool, typer.Option(help="Generate a new random secret (printed once).")
    ] = False,
    name: Annotated[str | None, typer.Option()] = None,
    max_distance: Annotated[int | None, typer.Option()] = None,
    any_distance: Annotated[bool, typer.Option(help="Drop the distance filter.")] = False,
    variant: Annotated[list[str] | None, typer.Option(help="Replace the variant filter.")] = None,
    category: Annotated[list[str] | None, typer.Option(help="Replace the category filter.")] = None,
) -> None:
    """Change a rule. New URLs and secrets also apply to queued retries and replays."""
    if secret is not None and rotate_secret:
        _fail("--secret and --rotate-secret exclude each other")
    if max_distance is not None and any_distance:
        _fail("--max-distance and --any-distance exclude each other")
    new = new_secret() if rotate_secret else secret
    with _db() as db:
        r = update_rule(
            db,
            rule_id,
            url=url if url is not None else UNSET,
            secret=new if new is not None else UNSET,
            name=name if name is not None else UNSET,
            max_distance=None
            if any_distance
            else (max_distance if max_distance is not None else UNSET),
            variants=variant if variant is not None else UNSET,
            categories=category if category is not None else UNSET,
        )
        _jsonl(r.to_json(with_secret=new is not None))


@action_app.command("enable")
def action_enable(rule_id: Annotated[int, typer.Argument(help="Rule id.")]) -> None:
    """Enable a rule (its paused queue resumes)."""
    with _db() as db:
        _jsonl(update_rule(db, rule_id, enabled=True).to_json())


@action_app.command("disable")
def action_disable(rule_id: Annotated[int, typer.Argument(help="Rule id.")]) -> None:
    """Disable a rule: no new deliveries; queued ones wait until it is enabled again."""
    with _db() as db:
        _jsonl(update_rule(db, rule_id, enabled=False).to_json())


@action_app.command("remove")
def action_remove(rule_id: Annotated[int, typer.Argument(help="Rule id.")]) -> None:
    """Remove a rule; its queued deliveries become dead letters."""
    with _db() as db:
        _jsonl(delete_rule(db, rule_id).to_json())


# ------------------------------------------------------------------------------ deliveries


@deliveries_app.command("list")
def deliveries_list(
    status: Annotated[
        str | None, typer.Option(help="pending, delivered or dead (dead letters).")
    ] = None,
    rule: Annotated[int | None, typer.Option(help="Only this rule's deliveries.")] = None,
    event: Annotated[int | None, typer.Option(help="Only this event's deliveries.")] = None,
    after_id: Annotated[int | None, typer.Option(help="Page after this delivery id.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1..10000).")] = 100,
    fmt: FormatOpt = "table",
) -> None:
    """List deliveries, e.g. the dead-letter queue: ``--status dead``."""
    _check_format(fmt)
    with _db() as db:
        rows = list_deliveries(
            db, status=status, rule_id=rule, event_id=event, after_id=after_id, limit=limit
        )
    if fmt == "jsonl":
        for d in rows:
            _jsonl(d.to_json())
        return
    t = Table(
        "id", "event", "rule", "status", "attempts", "next attempt", "last status", "last error"
    )
    for d in rows:
        t.add_row(
            str(d.id),
            str(d.event_id),
            "-" if d.rule_id is None else str(d.rule_id),
            d.status,
            str(d.attempts),
            d.next_attempt_at.isoformat(timespec="seconds") if d.status == "pending" else "",
            "" if d.last_status is None else str(d.last_status),
            d.last_error[:80],
        )
    out.print(t)


@deliveries_app.command("replay")
def deliveries_replay(
    delivery_id: Annotated[int | None, typer.Argument(help="One delivery to queue again.")] = None,
    all_dead: Annotated[bool, typer.Option("--all", help="Queue every dead letter again.")] = False,
    rule: Annotated[int | None, typer.Option(help="With --all: only this rule's.")] = None,
) -> None:
    """Queue dead letters again (same delivery id and Idempotency-Key, fresh attempt count)."""
    if (delivery_id is None) == (not all_dead):
        _fail("give either a DELIVERY_ID or --all")
    if rule is not None and not all_dead:
        _fail("--rule only goes with --all")
    with _db() as db:
        if delivery_id is not None:
            _jsonl(replay_delivery(db, delivery_id).to_json())
        else:
            n = replay_dead(db, rule_id=rule)
            _jsonl({"requeued": n})


# ------------------------------------------------------------------------------ events


@events_app.command("list")
def events_list(
    bank: Annotated[int | None, typer.Option(help="Only this bank id.")] = None,
    content_id: Annotated[str | None, typer.Option(help="Only this content id.")] = None,
    after_id: Annotated[int | None, typer.Option(help="Page after this event id.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1..10000).")] = 100,
) -> None:
    """Recorded match events as JSON lines."""
    with _db() as db:
        for e in list_events(
            db, bank_id=bank, content_id=content_id, after_id=after_id, limit=limit
        ):
            _jsonl(e.to_json())


@events_app.command("purge")
def events_purge(
    older_than_days: Annotated[
        int | None,
        typer.Option(help="Cut-off in days (default: LIFEGUARD_MATCH_EVENT_RETENTION_DAYS)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only count what would go.")] = False,
) -> None:
    """Delete match events older than the retention period, with their finished deliveries
    (events with a pending delivery stay). Audited."""
    from lifeguard.actions.retention import purge

    days = get_settings().match_event_retention_days if older_than_days is None else older_than_days
    if days <= 0:
        _fail("retention is 0 (keep everything): give --older-than-days N", "invalid_field")
    with _db() as db:
        try:
            r = purge(db, dt.timedelta(days=days), actor="cli", dry_run=dry_run)
        except LifeguardError as e:
            _fail(e.message, e.code)
            return
    _jsonl(
        {
            "cutoff": r.cutoff.isoformat(),
            "events": r.events,
            "deliveries": r.deliveries,
            "kept_pending": r.kept_pending,
            "dry_run": dry_run,
        }
    )


def retention_job(db: Database, days: int, every_s: float = 3600.0) -> Callable[[], int]:
    """A worker job: :func:`~lifeguard.actions.retention.purge` at most every ``every_s``."""
    from lifeguard.actions.retention import purge

    last = [float("-inf")]

    def retention() -> int:
        now = time.monotonic()
        if now - last[0] < every_s:
            return 0
        last[0] = now
        purge(db, dt.timedelta(days=days))
        return 0  # not "work done": a purge must not keep a draining worker alive

    return retention


def register(app: typer.Typer) -> None:
    """Add ``worker``, ``action``, ``deliveries`` and ``events`` to the main ``lifeguard`` app."""
    app.command("worker")(worker_cmd)
    app.add_typer(action_app, name="action")
    app.add_typer(deliveries_app, name="deliveries")
    app.add_typer(events_app, name="events")


#: A stand-alone app with the same commands (``python -m lifeguard.actions.worker`` uses it).
app = typer.Typer(help="lifeguard actions: webhooks on matches.", no_args_is_help=True)
register(app)
