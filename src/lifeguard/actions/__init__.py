"""Actions on matches: match events, per-bank webhook rules, a transactional outbox and its worker.

from lifeguard.actions import record_match
event_ids = record_match(db, result, content_id="post-123", media=media_hashes)

Events and deliveries are written in one transaction; ``lifeguard worker`` delivers them at least
once with signed webhooks (see docs/actions.md).
"""

from typing import TYPE_CHECKING, Any

from lifeguard.actions.events import EventInfo, get_event, list_events, record_match
from lifeguard.actions.outbox import (
    DeliveryInfo,
    count_deliveries,
    get_delivery,
    list_deliveries,
    replay_dead,
    replay_delivery,
)
from lifeguard.actions.rules import (
    RuleInfo,
    create_rule,
    delete_rule,
    get_rule,
    list_rules,
    update_rule,
    validate_url,
)
from lifeguard.actions.webhooks import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    SignatureError,
    signature_header,
    verify_signature,
)

if TYPE_CHECKING:
    from lifeguard.actions.worker import Worker, WorkerConfig


def __getattr__(name: str) -> Any:
    # The worker module is imported lazily so ``python -m lifeguard.actions.worker`` runs cleanly.
    if name in ("Worker", "WorkerConfig"):
        from lifeguard.actions import worker

        return getattr(worker, name)
    raise AttributeError(f"module 'lifeguard.actions' has no attribute {name!r}")


__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "DeliveryInfo",
    "EventInfo",
    "RuleInfo",
    "SignatureError",
    "Worker",
    "WorkerConfig",
    "count_deliveries",
    "create_rule",
    "delete_rule",
    "get_delivery",
    "get_event",
    "get_rule",
    "list_deliveries",
    "list_events",
    "list_rules",
    "record_match",
    "replay_dead",
    "replay_delivery",
    "signature_header",
    "update_rule",
    "validate_url",
    "verify_signature",
]
