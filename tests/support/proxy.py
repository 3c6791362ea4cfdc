"""A TCP forwarder that a test puts between a service and PostgreSQL or RabbitMQ, and cuts.

The real servers are shared and never stopped: an outage is simulated here.
`cut()` resets every live connection (both sides, so the server sees its client
vanish: PostgreSQL rolls back, RabbitMQ requeues what was unacknowledged) and
resets every new one until `restore()`.

`freeze()` is a partition without resets: nothing is forwarded, no connection
is closed, new ones hang; only timeouts and heartbeats can tell. `restore()`
lets what was held through.

`cut_after_reply_to(marker)` cuts at the worst moment for a client: the server
received a request containing `marker` (say `COMMIT`) and answered it, and the
answer is dropped, so the client cannot know the request took effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

_CHUNK = 64 * 1024
# SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
_RESET = struct.pack("ii", 1, 0)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `upstream_host:upstream_port`."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.accepted = 0  # connections forwarded since start
        self.refused = 0  # connections reset because the proxy was cut
        self.cuts = 0
        self._open = True
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._marker: bytes | None = None
        self._after_bytes = 0
        self._armed_at = 0
        self.fired = asyncio.Event()  # set when a `cut_after_reply_to` trigger cut
        self._flowing = asyncio.Event()  # cleared while frozen
        self._flowing.set()

    @property
    def port(self) -> int:
        assert self._server is not None, "start the proxy first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def is_cut(self) -> bool:
        return not self._open

    @property
    def live(self) -> int:
        return len(self._pairs)

    def url(self, url: str) -> str:
        """`url` (a PostgreSQL DSN or an AMQP URL) with its host and port replaced by ours."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def close(self) -> None:
        self._open = False
        self._flowing.set()  # connections held by a freeze go on, to be reset
        self._reset_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        """Reset every live connection, and every new one until `restore()`."""
        self._open = False
        self.cuts += 1
        self._reset_all()

    def restore(self) -> None:
        self._open = True
        self._flowing.set()

    def freeze(self) -> None:
        """Forward nothing and close nothing, as a partition does, until `restore()`."""
        self._flowing.clear()

    def cut_after_reply_to(self, marker: bytes, *, after_bytes: int = 0) -> None:
        """Arm a one-shot cut: the server's answer to the next request holding `marker` is lost.

        `after_bytes`: only a request that follows at least that many bytes sent on its
        connection since the previous `marker` (a large transaction, not a small one).
        """
        self._marker = marker
        self._after_bytes = after_bytes
        self._armed_at += 1  # counts start afresh on every connection
        self.fired.clear()

    def _reset_all(self) -> None:
        for client, upstream in list(self._pairs):
            _reset(client)
            _reset(upstream)
        self._pairs.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            self.refused += 1
            _reset(writer)
            return
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            _reset(writer)
            return
        if not self._open:  # cut while we were connecting upstream
            _reset(up_writer)
            _reset(writer)
            return
        self.accepted += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        awaiting_reply = asyncio.Event()  # the marker went upstream on this connection
        sent = [0, self._armed_at]  # bytes sent upstream since the last marker, and when
        pumps = [
            asyncio.create_task(
                self._pump(
                    reader, up_writer, lambda data: self._request_passes(data, awaiting_reply, sent)
                )
            ),
            asyncio.create_task(
                self._pump(up_reader, writer, lambda _: self._reply_passes(awaiting_reply))
            ),
        ]
        for task in pumps:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        # One side closed: close the other too, as a real peer going away would.
        self._pairs.discard(pair)
        for task in pumps:
            task.cancel()
        for side in pair:
            side.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        passes: Callable[[bytes], bool],
    ) -> None:
        """Copy one direction while the proxy flows; `passes` sees each chunk first and
        stops the copy by answering False."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(_CHUNK):
                if not passes(data):
                    return
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()

    def _request_passes(self, data: bytes, awaiting_reply: asyncio.Event, sent: list[int]) -> bool:
        """Client to server; notes when the armed marker passes."""
        if sent[1] != self._armed_at:
            sent[:] = [0, self._armed_at]
        if self._marker is not None and self._marker in data:
            if sent[0] >= self._after_bytes:
                self._marker = None
                awaiting_reply.set()
            sent[0] = 0
        else:
            sent[0] += len(data)
        return True

    def _reply_passes(self, awaiting_reply: asyncio.Event) -> bool:
        """Server to client; drops the answer to the marked request and cuts instead."""
        if awaiting_reply.is_set():
            self.cut()
            self.fired.set()
            return False
        return True


@asynccontextmanager
async def tcp_proxy(upstream_url: str) -> AsyncIterator[TcpProxy]:
    """A started proxy in front of the server that `upstream_url` names."""
    parts = urlsplit(upstream_url)
    default_port = 5432 if parts.scheme.startswith("postgres") else 5672
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or default_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
