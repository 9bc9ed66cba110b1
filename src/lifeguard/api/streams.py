"""Bridges between the event loop and the synchronous bank importer/exporter.

* :class:`BodyLines` lets ``import_entries`` (running in a worker thread) iterate the request body
  line by line as it arrives — nothing is held beyond the current chunk, and the upload waits
  while the database catches up (back-pressure).
* :func:`export_stream` runs ``export_bank`` in a thread writing into a bounded queue and yields
  its output as the response body; a client that disconnects stops the export.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import IO, Any

import anyio
import anyio.from_thread
from fastapi.concurrency import run_in_threadpool

_END = object()


class BodyLines:
    """A byte-line iterator over an async byte stream, for use from an anyio worker thread."""

    def __init__(self, stream: AsyncIterator[bytes], name: str) -> None:
        self._stream = stream
        self.name = name

    async def _next(self) -> bytes | None:
        try:
            return await self._stream.__anext__()
        except StopAsyncIteration:
            return None

    def __iter__(self) -> Iterator[bytes]:
        buf = b""
        while True:
            chunk = anyio.from_thread.run(self._next)
            if chunk is None:
                break
            if not chunk:
                continue
            buf += chunk
            start = 0
            while True:
                nl = buf.find(b"\n", start)
                if nl < 0:
                    break
                yield buf[start : nl + 1]
                start = nl + 1
            buf = buf[start:]
        if buf:
            yield buf


class _QueueWriter:
    """A text sink that hands ~64 KiB chunks to a bounded queue (blocks when the client is slow)."""

    def __init__(self, q: queue.Queue[Any], cancelled: threading.Event) -> None:
        self.q = q
        self.cancelled = cancelled
        self.parts: list[str] = []
        self.size = 0

    def write(self, s: str) -> int:
        self.parts.append(s)
        self.size += len(s)
        if self.size >= 64 * 1024:
            self.flush()
        return len(s)

    def flush(self) -> None:
        if not self.parts:
            return
        data = "".join(self.parts).encode("utf-8")
        self.parts, self.size = [], 0
        while True:
            if self.cancelled.is_set():
                raise _Cancelled()
            try:
                self.q.put(data, timeout=0.5)
                return
            except queue.Full:
                continue


class _Cancelled(Exception):
    pass


async def export_stream(run: Callable[[IO[str]], object]) -> AsyncIterator[bytes]:
    """Start ``run(sink)`` in a thread. Errors raised before the first byte propagate from this
    call (so they become a problem response); the returned iterator yields the rest."""
    q: queue.Queue[Any] = queue.Queue(maxsize=16)
    cancelled = threading.Event()
    writer = _QueueWriter(q, cancelled)

    def work() -> None:
        try:
            run(writer)  # type: ignore[arg-type]
            writer.flush()
            q.put(_END)
        except _Cancelled:
            pass
        except BaseException as e:
            while not cancelled.is_set():
                try:
                    q.put(e, timeout=0.5)
                    break
                except queue.Full:
                    continue

    t = threading.Thread(target=work, name="lifeguard-export", daemon=True)
    t.start()
    first = await run_in_threadpool(q.get)
    if isinstance(first, BaseException):
        raise first

    async def body() -> AsyncIterator[bytes]:
        try:
            item = first
            while item is not _END:
                if isinstance(item, BaseException):
                    # Headers are sent: end the body early; the client sees a truncated stream.
                    raise item
                yield item
                item = await run_in_threadpool(q.get)
        finally:
            cancelled.set()

    return body()
