"""Reports room: the tamper-evident audit log (``audit``) and the encrypted evidence vault
(``evidence``). See docs/audit-and-evidence.md."""

from __future__ import annotations

from lifeguard.reports.audit import (
    AuditError,
    AuditKeyError,
    VerifyResult,
    checkpoint,
    record,
    verify,
)
from lifeguard.reports.evidence import (
    Evidence,
    EvidenceError,
    EvidenceInfo,
    EvidenceIntegrityError,
    EvidenceKeyError,
    EvidenceVault,
    Keyring,
    purge,
)

__all__ = [
    "AuditError",
    "AuditKeyError",
    "Evidence",
    "EvidenceError",
    "EvidenceInfo",
    "EvidenceIntegrityError",
    "EvidenceKeyError",
    "EvidenceVault",
    "Keyring",
    "VerifyResult",
    "checkpoint",
    "purge",
    "record",
    "verify",
]
