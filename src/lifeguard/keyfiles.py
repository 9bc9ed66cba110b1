"""Master keys from the environment or a file: base64 keys separated by commas or newlines, ``#``
starting a comment line, the first key current and the others kept for reading older data (rotation).
Used by the evidence vault and message franking."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path

from lifeguard.errors import LifeguardError


def parse_keys(
    text: str,
    source: str,
    error: type[LifeguardError],
    *,
    min_bytes: int = 32,
    max_bytes: int | None = None,
    what: str = "",
) -> list[bytes]:
    """The keys in ``text`` (``source`` names it in messages); ``error`` on any bad key or none."""
    keys: list[bytes] = []
    for n, part in enumerate(text.replace(",", "\n").splitlines(), 1):
        part = part.strip()
        if not part or part.startswith("#"):
            continue
        try:
            k = base64.b64decode(part, validate=True)
        except (binascii.Error, ValueError):
            raise error(f"{source}: key {n} is not valid base64") from None
        if len(k) < min_bytes or (max_bytes is not None and len(k) > max_bytes):
            want = (
                f"exactly {min_bytes}" if max_bytes == min_bytes else f"at least {min_bytes}"
            ) + (f" ({what})" if what else "")
            raise error(f"{source}: key {n} is {len(k)} bytes; {want} needed")
        keys.append(k)
    if not keys:
        raise error(f"{source}: no key found")
    return keys


def keys_from_env(
    value_env: str,
    file_env: str,
    error: type[LifeguardError],
    *,
    missing: str,
    missing_code: str | None = None,
    environ: Mapping[str, str] | None = None,
    min_bytes: int = 32,
    max_bytes: int | None = None,
    what: str = "",
) -> list[bytes]:
    """Keys from ``$value_env`` (the base64 text itself) or the file named by ``$file_env``;
    ``error(missing)`` when neither is set."""
    env = os.environ if environ is None else environ
    value = env.get(value_env, "").strip()
    path = env.get(file_env, "").strip()
    if value:
        text, source = value, value_env
    elif path:
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as e:
            raise error(f"{file_env}={path}: cannot read ({e})") from None
        source = path
    else:
        raise error(missing, code=missing_code)
    return parse_keys(text, source, error, min_bytes=min_bytes, max_bytes=max_bytes, what=what)
