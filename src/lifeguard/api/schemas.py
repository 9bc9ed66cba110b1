"""Request and response bodies of the ``/v1`` API (they also shape the OpenAPI document)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lifeguard.banks import BankInfo, EntryInfo, ImportResult


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BankOut(BaseModel):
    id: int
    name: str
    description: str
    kind: Literal["block", "allow"] | str
    enabled: bool
    match_threshold: int
    match_variants: bool
    categories: list[str]
    supplier: str
    created_at: dt.datetime
    updated_at: dt.datetime
    rev: int
    entry_counts: dict[str, int]

    @classmethod
    def of(cls, b: BankInfo) -> BankOut:
        return cls(
            id=b.id,
            name=b.name,
            description=b.description,
            kind=b.kind,
            enabled=b.enabled,
            match_threshold=b.match_threshold,
            match_variants=b.match_variants,
            categories=list(b.categories),
            supplier=b.supplier,
            created_at=b.created_at,
            updated_at=b.updated_at,
            rev=b.rev,
            entry_counts=dict(b.entry_counts),
        )


class BankCreate(Strict):
    name: str = Field(description="Letters, digits and underscores; upper-cased (HMA rule).")
    description: str = ""
    kind: Literal["block", "allow"] = "block"
    enabled: bool = True
    match_threshold: int = Field(default=31, ge=0, le=31)
    match_variants: bool = True
    categories: list[str] = Field(default_factory=list)
    supplier: str = ""


class BankPatch(Strict):
    name: str | None = None
    description: str | None = None
    kind: Literal["block", "allow"] | None = None
    enabled: bool | None = None
    match_threshold: int | None = Field(default=None, ge=0, le=31)
    match_variants: bool | None = None
    categories: list[str] | None = None
    supplier: str | None = None


class EntryOut(BaseModel):
    id: int
    bank_id: int
    signal_type: str
    value: str
    quality: int | None
    source: str
    external_id: str
    added_at: dt.datetime
    added_by: str
    note: str
    categories: list[str]
    status: str
    status_changed_at: dt.datetime | None
    status_changed_by: str
    status_reason: str
    rev: int
    variants: dict[str, Any]

    @classmethod
    def of(cls, e: EntryInfo) -> EntryOut:
        return cls(
            id=e.id,
            bank_id=e.bank_id,
            signal_type=e.signal_type,
            value=e.value,
            quality=e.quality,
            source=e.source,
            external_id=e.external_id,
            added_at=e.added_at,
            added_by=e.added_by,
            note=e.note,
            categories=list(e.categories),
            status=e.status,
            status_changed_at=e.status_changed_at,
            status_changed_by=e.status_changed_by,
            status_reason=e.status_reason,
            rev=e.rev,
            variants=dict(e.variants),
        )


class EntryPageOut(BaseModel):
    items: list[EntryOut]
    total: int
    next_after_id: int | None = Field(description="Pass as after_id for the next page.")


class EntryCreate(Strict):
    signal_type: str = Field(description="pdq, md5, sha256 or vpdq (HMA spellings accepted).")
    value: str
    quality: int | None = Field(default=None, ge=0, le=100)
    source: str = ""
    external_id: str = ""
    note: str = ""
    categories: list[str] = Field(default_factory=list)


class AddOut(BaseModel):
    entry: EntryOut
    created: bool
    duplicate: bool
    reactivated: bool


class EntryPatch(Strict):
    status: Literal["active", "disabled", "removed"]
    reason: str = ""


class SignalIn(Strict):
    signal_type: str
    value: str


class MatchSignalsIn(Strict):
    signals: list[SignalIn] = Field(min_length=1, max_length=1000)
    content_id: str | None = Field(default=None, max_length=256)


class MatchUrlIn(Strict):
    url: str = Field(max_length=4096)
    content_id: str | None = Field(default=None, max_length=256)
    variants: bool = True


class MatchOut(BaseModel):
    bank: str
    bank_id: int
    bank_kind: str
    entry_id: int
    external_id: str
    signal_type: str
    value: str
    distance: int
    variant: str
    query_variant: str
    listed_variant: str
    categories: list[str]
    suppressed_by: list[int]
    query_match_pct: float | None = None
    compared_match_pct: float | None = None


class MatchResultOut(BaseModel):
    matched: bool
    banks: list[str]
    matches: list[MatchOut]
    suppressed: list[MatchOut]
    allow_list_hits: list[MatchOut]
    low_quality: bool
    revision: int
    content_id: str | None = None
    media: dict[str, Any] | None = Field(
        default=None, description="The query's hashes (MediaHashes) when media was uploaded."
    )


class BatchItemOut(BaseModel):
    filename: str
    content_id: str | None = None
    result: MatchResultOut | None = None
    error: dict[str, Any] | None = None


class BatchOut(BaseModel):
    results: list[BatchItemOut]


class RejectionOut(BaseModel):
    line_no: int
    reason: str
    text: str


class ImportOut(BaseModel):
    job_id: int
    bank_id: int
    format: str
    source_name: str
    lines: int
    added: int
    duplicates: int
    tombstoned: int
    rejected: int
    rejections: list[RejectionOut]
    rev: int

    @classmethod
    def of(cls, r: ImportResult) -> ImportOut:
        return cls(
            job_id=r.job_id,
            bank_id=r.bank_id,
            format=r.format,
            source_name=r.source_name,
            lines=r.lines,
            added=r.added,
            duplicates=r.duplicates,
            tombstoned=r.tombstoned,
            rejected=r.rejected,
            rejections=[
                RejectionOut(line_no=x.line_no, reason=x.reason, text=x.text) for x in r.rejections
            ],
            rev=r.rev,
        )


class KeyCreate(Strict):
    name: str = Field(default="", max_length=256)
    scopes: list[
        Literal["hash", "match", "bank:read", "bank:write", "admin", "frank", "takedown"]
    ] = Field(min_length=1)
    expires_at: dt.datetime | None = None
    rate_limit_per_s: float | None = Field(default=None, ge=0)


class KeyOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: str | None
    created_by: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None
    rate_limit_per_s: float | None
    active: bool


class KeyCreatedOut(BaseModel):
    key: KeyOut
    token: str = Field(description="The secret API key. Shown once; only its digest is stored.")


class IndexStatusOut(BaseModel):
    ready: bool
    revision: int
    database_revision: int | None
    sizes: dict[str, int]
    load_error: str | None
    loaded_at: float | None
