"""Run the service on uvicorn. With ``workers > 1`` uvicorn imports :func:`app_factory` in each
worker process, which reads the same environment / ``LIFEGUARD_CONFIG`` file."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from lifeguard.api.app import create_app
from lifeguard.api.config import CONFIG_ENV, load_settings


def app_factory() -> FastAPI:
    settings, api = load_settings()
    return create_app(settings, api)


def serve(
    *,
    config: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    log_level: str = "info",
) -> None:
    import uvicorn

    if config is not None:
        os.environ[CONFIG_ENV] = str(config)  # worker processes read it too
    settings, api = load_settings(config)
    host = host or api.host
    port = api.port if port is None else port
    workers = workers or api.workers
    if workers > 1:
        # Migrate once here, so the workers do not race to upgrade the schema.
        from lifeguard.store.db import Database

        Database.open(settings).dispose()
        uvicorn.run(
            "lifeguard.api.serve:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            proxy_headers=False,
        )
    else:
        uvicorn.run(create_app(settings, api), host=host, port=port, log_level=log_level)


def openapi_document() -> dict[str, object]:
    """The OpenAPI document (no database needed)."""
    from lifeguard.settings import Settings

    return create_app(Settings(), None).openapi()


def write_openapi(path: Path) -> None:
    import json

    path.write_text(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":  # python -m lifeguard.api.serve docs/openapi.json
    import sys

    write_openapi(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/openapi.json"))
