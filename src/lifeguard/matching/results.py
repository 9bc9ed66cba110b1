"""Typed match results. They carry hashes and ids, never media."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

VariantKind = Literal[
    "plain", "dihedral", "trimmed", "deskewed", "region", "video", "video_frame", "exact"
]


@dataclass(frozen=True, slots=True)
class Match:
    bank: str
    bank_id: int
    bank_kind: str  # "block" | "allow"
    entry_id: int
    external_id: str
    signal_type: str  # signal type of the listed entry
    value: str  # the listed hash (for vPDQ: summary, not the frames)
    distance: int
    variant: VariantKind
    query_variant: str  # e.g. "original", "rotate90_ccw", "trimmed", "md5"
    listed_variant: str  # "plain", "trimmed", "region90", ...
    categories: tuple[str, ...] = ()
    suppressed_by: tuple[int, ...] = ()  # allow-list entry ids that suppressed this match
    query_match_pct: float | None = None  # vPDQ only
    compared_match_pct: float | None = None  # vPDQ only

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["categories"] = list(self.categories)
        d["suppressed_by"] = list(self.suppressed_by)
        if self.query_match_pct is None:
            d.pop("query_match_pct")
            d.pop("compared_match_pct")
        return d


@dataclass(slots=True)
class MatchResult:
    """Block-list matches that stand, those an allow-list suppressed, and the allow-list hits."""

    matches: list[Match] = field(default_factory=list)
    suppressed: list[Match] = field(default_factory=list)
    allowed: list[Match] = field(default_factory=list)
    low_quality: bool = False
    revision: int = 0

    @property
    def matched(self) -> bool:
        return bool(self.matches)

    @property
    def banks(self) -> list[str]:
        return sorted({m.bank for m in self.matches})

    def to_json(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "banks": self.banks,
            "matches": [m.to_json() for m in self.matches],
            "suppressed": [m.to_json() for m in self.suppressed],
            "allow_list_hits": [m.to_json() for m in self.allowed],
            "low_quality": self.low_quality,
            "revision": self.revision,
        }
