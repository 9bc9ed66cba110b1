"""One typed settings object, read from the environment (``LIFEGUARD_*``) or a ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob lifeguard has. Environment variables are ``LIFEGUARD_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="LIFEGUARD_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path(".lifeguard"), description="Where the SQLite store and index snapshots live."
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL. Empty means embedded SQLite at <data_dir>/lifeguard.db.",
    )
    # Media limits (decompression bombs, oversize files).
    max_image_pixels: int = Field(
        default=50_000_000, ge=1, description="Largest image (width*height) decoded."
    )
    max_image_side: int = Field(
        default=65_535, ge=1, description="Largest width or height accepted."
    )
    max_file_bytes: int = Field(
        default=200 * 1024 * 1024, ge=1, description="Largest media file read."
    )
    fast_decode: bool = Field(
        default=True, description="Decode big JPEGs at reduced scale (PDQ needs 64x64)."
    )
    fast_decode_min_side: int = Field(
        default=512,
        ge=64,
        description="Reduced-scale decode keeps this many pixels on the short side.",
    )
    # PDQ decisions.
    pdq_threshold: int = Field(default=31, ge=0, le=31, description="Default PDQ match distance.")
    match_event_retention_days: int = Field(
        default=365,
        ge=0,
        description="Match events (and their finished webhook deliveries) older than this are "
        "deleted by `lifeguard worker` (hourly) or `lifeguard events purge`; 0 keeps them.",
    )
    pdq_engine: Literal["numpy", "reference"] = Field(
        default="numpy",
        description=(
            "PDQ implementation: numpy (fast; same bits as the reference on the test corpora) or "
            "reference (Meta's C++ via pdqhash). Read once per process."
        ),
    )
    pdq_quality_threshold: int = Field(
        default=50, ge=0, le=100, description="PDQ hashes below this are low quality."
    )
    listing_crop_corners: bool = Field(
        default=True,
        description="Store the four corner 90% crops of listed media (matches copies cropped from one side; 7 hashes per listed image instead of 3).",
    )
    # Video.
    vpdq_seconds_per_hash: float = Field(default=1.0, ge=0)
    vpdq_query_match_pct: float = Field(default=80.0, ge=0, le=100)
    vpdq_index_match_pct: float = Field(default=0.0, ge=0, le=100)
    # Review web UI (docs/review.md, "Web UI and wellness").
    review_break_after_reveals: int = Field(
        default=25,
        ge=1,
        description="Reveals of media per reviewer per UTC day after which the UI prompts for a break.",
    )
    review_session_hours: float = Field(
        default=10.0, gt=0, le=24 * 7, description="Lifetime of a review UI login session."
    )
    # Index.
    index_sync_interval_s: float = Field(
        default=0.25, gt=0, description="How often a matcher polls for bank changes."
    )
    # Safety: contact rules on metadata (docs/contact-rules.md).
    safety_rules_file: Path | None = Field(
        default=None, description="Contact rules (TOML). Unset: the shipped ICU F1-style defaults."
    )
    conversation_embedding: Literal["auto", "off"] = Field(
        default="auto",
        description="Conversation risk: 'auto' uses the all-MiniLM-L6-v2 sentence embedding (the "
        "conversation model's full head) when installed; 'off' always uses the lite head.",
    )
    safety_snapshot_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="Contact-rules state is saved to <data_dir>/safety/engine.json at most this often.",
    )

    # Review (docs/review.md): time-to-first-review targets per priority, internal banks.
    review_target_p1_hours: float = Field(
        default=1.0, gt=0, description="Time-to-first-review target for priority 1 cases."
    )
    review_target_p2_hours: float = Field(
        default=24.0, gt=0, description="Time-to-first-review target for priority 2 cases."
    )
    review_target_p3_hours: float = Field(
        default=72.0, gt=0, description="Time-to-first-review target for priority 3 cases."
    )
    review_confirmed_bank: str = Field(
        default="LIFEGUARD_CONFIRMED",
        description="Block bank that confirmed case hashes go into (created if missing).",
    )
    review_allow_bank: str = Field(
        default="LIFEGUARD_FALSE_POSITIVES",
        description="Allow-list bank that false-positive hashes go into (created if missing).",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'lifeguard.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
