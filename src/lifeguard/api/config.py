"""Service settings: ``LIFEGUARD_API_*`` environment variables, or the ``[api]`` table of a TOML
file (whose top level may also hold the core ``Settings`` keys). Environment variables win over
the file, the file over defaults.

```toml
data_dir = "/var/lib/lifeguard"          # core Settings (LIFEGUARD_DATA_DIR)
max_file_bytes = 52428800

[api]
host = "0.0.0.0"
port = 8080
workers = 2
url_fetch_enabled = true
url_fetch_allowed_hosts = ["media.example.com"]
```
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from lifeguard.settings import Settings

CONFIG_ENV = "LIFEGUARD_CONFIG"


class ApiSettings(BaseSettings):
    """HTTP service knobs. Environment variables are ``LIFEGUARD_API_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="LIFEGUARD_API_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, description="uvicorn worker processes.")
    hash_threads: int = Field(
        default=0,
        ge=0,
        description="Threads hashing uploads at once (0: one per CPU core).",
    )
    max_batch_files: int = Field(default=32, ge=1, description="Files per /v1/match/batch.")
    max_import_bytes: int = Field(
        default=4 * 1024**3, ge=1, description="Largest bank import body (streamed)."
    )
    max_json_bytes: int = Field(default=16 * 1024**2, ge=1, description="Largest JSON body.")
    fast_lane: bool = Field(
        default=True,
        description=(
            "Answer hash lookups that miss (GET /m/lookup, POST /v1/match/signals) before the "
            "framework's routing and validation; everything else takes the full path."
        ),
    )
    # API keys and rate limits.
    rate_limit_per_s: float = Field(
        default=50.0, ge=0, description="Default requests/second per key (0: unlimited)."
    )
    rate_limit_burst: float = Field(default=100.0, ge=1, description="Token bucket size.")
    key_cache_ttl_s: float = Field(
        default=2.0, ge=0, description="How long a verified key is trusted without a DB read."
    )
    # Match by URL (off unless enabled; only listed hosts; private addresses always refused).
    url_fetch_enabled: bool = Field(default=False)
    url_fetch_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names that may be fetched (exact, or '.example.com' for subdomains).",
    )
    url_fetch_timeout_s: float = Field(default=10.0, gt=0, description="Whole-fetch deadline.")
    url_fetch_max_redirects: int = Field(default=3, ge=0)
    url_fetch_allow_http: bool = Field(default=False, description="Allow plain http:// URLs.")
    UNSAFE_url_fetch_allow_loopback_for_tests: bool = Field(
        default=False,
        description=(
            "TEST ONLY: lets the fetcher connect to 127.0.0.0/8 and ::1 so tests can serve "
            "media from a local HTTP server. Never set this in production."
        ),
    )
    metrics_enabled: bool = Field(default=True)
    matcher_load_in_background: bool = Field(default=True)
    index_listen: bool = Field(
        default=True,
        description=(
            "On PostgreSQL, apply bank changes as they commit (LISTEN/NOTIFY on a dedicated "
            "connection); false: poll every index_sync_interval_s (e.g. behind a pooler in "
            "transaction mode, which cannot LISTEN)."
        ),
    )


def _toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        path = Path(env) if env else None
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {path}: {e}") from None


class _DictSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k in self.settings_cls.model_fields}


def _with_file(cls: type[BaseSettings], data: dict[str, Any]) -> BaseSettings:
    """An instance of ``cls`` from environment variables over ``data`` over defaults."""

    class _Sourced(cls):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls_,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                env_settings,
                dotenv_settings,
                _DictSource(settings_cls, data),
                file_secret_settings,
            )

    inst = _Sourced()
    return cls.model_validate(inst.model_dump())


def load_settings(config: Path | None = None) -> tuple[Settings, ApiSettings]:
    """Core and API settings from the environment and an optional TOML file (``config``, else
    ``$LIFEGUARD_CONFIG``)."""
    data = _toml(config)
    api_data = data.pop("api", {}) or {}
    if not isinstance(api_data, dict):
        raise ValueError("config file: [api] must be a table")
    core = _with_file(Settings, data)
    api = _with_file(ApiSettings, api_data)
    assert isinstance(core, Settings) and isinstance(api, ApiSettings)
    return core, api
