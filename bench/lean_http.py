"""The benchmarks' lean HTTP servers' shared part: HTTP/1.1 keep-alive, as little as the
SDK, the proxies and `wrk` need.

A raw asyncio protocol (on uvloop), so that the fake costs the machine as little as it
can beside what is measured: it frames requests (a head, a `content-length` body, one
after another on a connection) and hands each to `request`; a subclass decides what to
answer and when, and writes with `write` (nothing, once the client has gone).
"""

from __future__ import annotations

import asyncio
from typing import cast


class LeanHttp(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def write(self, data: bytes) -> bool:
        """Write `data` if the client is still there; whether it was."""
        if not self.connected:
            return False
        assert self._transport is not None
        self._transport.write(data)
        return True

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            self.request(head, body)

    def request(self, head: bytes, body: bytes) -> None:
        """One whole request; answer it (now or later) with `write`."""
        raise NotImplementedError
