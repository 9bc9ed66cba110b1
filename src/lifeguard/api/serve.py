"""Run the service on uvicorn. With ``workers > 1`` uvicorn imports :func:`app_factory` in each
worker process, which reads the same environment / ``LIFEGUARD_CONFIG`` file."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from lifeguard.api.app import create_app
from lifeguard.api.config import CONFIG_ENV, load_settings


class TcpConfig(uvicorn.Config):
    """uvicorn's config, but the shared listening socket of ``workers > 1`` is created with
    ``proto=IPPROTO_TCP``.

    uvicorn binds it with ``socket.socket(family)`` (proto 0), and asyncio only sets
    ``TCP_NODELAY`` on accepted connections whose socket says ``IPPROTO_TCP``: without it, a
    response written in two segments (headers, then body) waits for the client's delayed ACK —
    about 40 ms per request. A single worker is not affected (asyncio binds that socket itself).
    """

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            tcp = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, sock.detach())
            tcp.set_inheritable(True)
            return tcp
        return sock


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
        from uvicorn.supervisors import Multiprocess

        ucfg = TcpConfig(
            "lifeguard.api.serve:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            proxy_headers=False,
        )
        # What uvicorn.run does for workers > 1, with a listening socket that says it is TCP.
        Multiprocess(ucfg, sockets=[ucfg.bind_socket()]).run()
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
