"""Errors with a stable machine-readable ``code`` and a precise human message."""

from __future__ import annotations


class LifeguardError(Exception):
    """Base class. ``code`` is stable and safe to show to API clients."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class MediaError(LifeguardError):
    """A media file could not be hashed (empty, corrupt, unsupported, too large, ...)."""

    code = "media_error"


class InvalidSignal(LifeguardError):
    """A hash string is malformed for its signal type, or the type is unknown."""

    code = "invalid_signal"


class NotFound(LifeguardError):
    code = "not_found"


class Conflict(LifeguardError):
    code = "conflict"


class Forbidden(LifeguardError):
    """The caller is known but may not do this (a role or scope is missing). 403 over HTTP."""

    code = "forbidden"


class ImportFormatError(LifeguardError):
    """A whole import file is unusable (e.g. a CSV without a hash column)."""

    code = "import_format"
