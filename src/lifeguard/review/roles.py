"""Who acts in review: an :class:`Actor` with a :class:`Role`.

Shared by the review service (cases, decisions, appeals, law-enforcement reports) and the web UI
(logins). Roles are ordered: an admin may do what a senior reviewer may, who may do what a reviewer may.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lifeguard.errors import Forbidden


class Role(enum.StrEnum):
    REVIEWER = "reviewer"
    SENIOR = "senior"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANK = {Role.REVIEWER: 1, Role.SENIOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True)
class Actor:
    """A person acting in review. ``id`` is stable (the reviewer's account name); it is what the audit
    log, decisions and exposure counters record."""

    id: str
    role: Role

    def require(self, role: Role, what: str) -> None:
        if not self.role.at_least(role):
            raise Forbidden(f"{what} needs the {role.value} role; {self.id} is {self.role.value}")

    @property
    def audit_name(self) -> str:
        return f"reviewer:{self.id}"
