"""``lifeguard serve --workers N`` shares one listening socket between uvicorn's worker processes.
It must say it is TCP (``proto=IPPROTO_TCP``): asyncio sets ``TCP_NODELAY`` on accepted
connections only then, and without it every small response waits ~40 ms for the client's delayed
ACK (measured with bench/bench_load.py: 48 ms p50 at one client with 2 workers before the fix,
0.9 ms after)."""

from __future__ import annotations

import asyncio
import socket
from multiprocessing.reduction import ForkingPickler

from lifeguard.api.serve import TcpConfig


def _nodelay_of_accepted(sock: socket.socket) -> int:
    """Serve on ``sock`` as a uvicorn worker does (``create_server(sock=...)``), connect, and
    return the TCP_NODELAY option of the server side of the connection."""

    async def main() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            s = writer.get_extra_info("socket")
            seen.set_result(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handler, sock=sock)
        port = sock.getsockname()[1]
        _, w = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            w.close()
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def test_workers_socket_is_tcp_and_connections_get_nodelay() -> None:
    cfg = TcpConfig("lifeguard.api.serve:app_factory", factory=True, host="127.0.0.1", port=0)
    sock = cfg.bind_socket()
    try:
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_STREAM
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.get_inheritable()
        # Worker processes receive the socket pickled (multiprocessing spawn): proto survives.
        copy = ForkingPickler.loads(ForkingPickler.dumps(sock))
        try:
            assert copy.proto == socket.IPPROTO_TCP
        finally:
            copy.close()
        assert _nodelay_of_accepted(sock) != 0
    finally:
        sock.close()
