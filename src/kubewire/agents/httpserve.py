"""A tiny HTTP/1.1 server for agents' side endpoints (health checks, metrics), on h11.

Each request is answered by a synchronous handler ``(method, path) -> (status, headers, body)`` and
the connection closed, which is all kube-proxy's health and metrics endpoints need; h11 does the
parsing, so malformed requests get a 400 and never an exception in the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import h11

Handler = Callable[[str, str], tuple[int, list[tuple[str, str]], bytes]]
MAX_REQUEST = 64 * 1024


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), 10.0)
                conn.receive_data(data)
                if not data:
                    return
                continue
            if isinstance(event, h11.Request):
                status, headers, body = handler(event.method.decode(), event.target.decode())
                break
            if isinstance(event, h11.ConnectionClosed):
                return
    except (h11.RemoteProtocolError, TimeoutError):
        status, headers, body = 400, [("Content-Type", "text/plain")], b"bad request\n"
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.next_event()
    except (ConnectionError, OSError):
        return
    response = h11.Response(
        status_code=status,
        headers=[*headers, ("Content-Length", str(len(body))), ("Connection", "close")],
    )
    with contextlib.suppress(ConnectionError, OSError, h11.LocalProtocolError):
        writer.write(conn.send(response) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        await writer.drain()
    with contextlib.suppress(ConnectionError, OSError):
        writer.close()
        await writer.wait_closed()


async def serve_http(host: str | None, port: int, handler: Handler) -> asyncio.Server:
    """Listen on ``host:port`` (None: every address of the namespace) until the server is closed."""
    return await asyncio.start_server(
        lambda r, w: _serve_connection(r, w, handler), host, port, reuse_address=True, start_serving=True
    )
