"""``lifeguard serve`` (the Typer command in lifeguard.api.cli_commands) in a subprocess, with two
uvicorn workers and settings from a TOML file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SERVE = "import typer; from lifeguard.api.cli_commands import serve_cmd; typer.run(serve_cmd)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_with_workers_and_config_file(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "lifeguard.toml"
    cfg.write_text(
        f'data_dir = "{tmp_path / "data"}"\n\n[api]\nhost = "127.0.0.1"\nport = {port}\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFEGUARD_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVE,
            "--config",
            str(cfg),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        r = httpx.get(f"http://127.0.0.1:{port}/v1/banks")
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert (tmp_path / "data" / "lifeguard.db").exists()  # the file's data_dir was used
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
