"""Signal types: the small interface every hash kind implements (after python-threatexchange's
``SignalType``, without its pickling). A signal is a value (a normalised string) of a named type."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import ClassVar

from lifeguard.errors import InvalidSignal

_HEX = re.compile(r"^[0-9a-f]*$")


class SignalType(ABC):
    """A kind of hash. Subclasses are stateless; use the class methods."""

    name: ClassVar[str]
    #: Whether near matches are meaningful (PDQ) or only equality (MD5, SHA-256).
    is_perceptual: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def validate(cls, value: str) -> str:
        """Return the canonical form of ``value`` or raise :class:`InvalidSignal` saying why."""

    @classmethod
    def compare(cls, a: str, b: str) -> int:
        """Distance between two canonical values (0 = identical). Exact types: 0 or 1."""
        return 0 if a == b else 1


class _HexDigest(SignalType):
    hex_len: ClassVar[int]

    @classmethod
    def validate(cls, value: str) -> str:
        if not isinstance(value, str):
            raise InvalidSignal(f"{cls.name}: expected a hex string, got {type(value).__name__}")
        v = value.strip().lower()
        if v.startswith("0x"):
            v = v[2:]
        if not v:
            raise InvalidSignal(f"{cls.name}: empty value")
        if not _HEX.match(v):
            bad = next(c for c in v if c not in "0123456789abcdef")
            raise InvalidSignal(f"{cls.name}: not hexadecimal (character {bad!r})")
        if len(v) != cls.hex_len:
            raise InvalidSignal(
                f"{cls.name}: wrong length {len(v)}, expected {cls.hex_len} hex digits"
            )
        return v


class PdqSignal(_HexDigest):
    """Meta's PDQ: 256 bits as 64 hex digits; near matches within Hamming distance 31."""

    name = "pdq"
    hex_len = 64
    is_perceptual = True

    @classmethod
    def compare(cls, a: str, b: str) -> int:
        return (int(a, 16) ^ int(b, 16)).bit_count()


class Md5Signal(_HexDigest):
    name = "md5"
    hex_len = 32


class Sha256Signal(_HexDigest):
    name = "sha256"
    hex_len = 64


SIGNAL_TYPES: dict[str, type[SignalType]] = {
    t.name: t for t in (PdqSignal, Md5Signal, Sha256Signal)
}

# Names other tools use for the same signal types (python-threatexchange / HMA spellings).
ALIASES = {
    "pdq": "pdq",
    "photo_pdq": "pdq",
    "hash_pdq": "pdq",
    "md5": "md5",
    "video_md5": "md5",
    "photo_md5": "md5",
    "hash_md5": "md5",
    "sha256": "sha256",
    "sha-256": "sha256",
    "hash_sha256": "sha256",
    "vpdq": "vpdq",
    "video_vpdq": "vpdq",
}


def register(signal_type: type[SignalType]) -> None:
    """Add a signal type (e.g. vPDQ, registered by ``lifeguard.signals.video``)."""
    SIGNAL_TYPES[signal_type.name] = signal_type


def get_signal_type(name: str) -> type[SignalType]:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    try:
        return SIGNAL_TYPES[key]
    except KeyError:
        known = ", ".join(sorted(SIGNAL_TYPES))
        raise InvalidSignal(f"unknown signal type {name!r} (known: {known})") from None


def normalise(signal_type: str, value: str) -> tuple[str, str]:
    """Canonical (type name, value) or :class:`InvalidSignal`."""
    st = get_signal_type(signal_type)
    return st.name, st.validate(value)
