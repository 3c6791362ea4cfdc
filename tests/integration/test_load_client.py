"""The benchmark's HTTP client against a real uvicorn whose keep-alive ends while it idles.

The end-to-end benchmark lost 12 of 3,000 answers (`IncompleteReadError`) 12 s
into a 15 s run: connections opened during a spike sat at the bottom of the
client's idle stack past uvicorn's keep-alive timeout, the server closed them,
and the client then sent on them. The first test shows that failure; the second
that the client's pool now notices and opens a fresh connection instead.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from bench.load import Connection, Pool, Target
from tests.support.waiting import eventually

KEEP_ALIVE = 1  # seconds, uvicorn's own timeout for idle connections


async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    body = json.dumps({"generationId": "g"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        answer,
        host="127.0.0.1",
        port=port,
        timeout_keep_alive=KEEP_ALIVE,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        return bool(server.started)

    await eventually(started, timeout=10, interval=0.01)
    request = (
        f"POST /x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 2\r\n"
        "Connection: keep-alive\r\n\r\n{}"
    ).encode()
    try:
        yield Target("127.0.0.1", port, request)
    finally:
        server.should_exit = True
        await serving


async def test_a_connection_reused_after_the_server_closed_it_gets_no_answer(
    target: Target,
) -> None:
    conn = await Connection.open(target)
    assert (await conn.send(target.request))[0] == 200
    await asyncio.sleep(KEEP_ALIVE + 0.5)
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await conn.send(target.request)
    conn.close()


async def test_the_pool_replaces_connections_the_server_closed_while_idle(
    target: Target,
) -> None:
    pool = Pool(target)

    async def one() -> int:
        conn = await pool.acquire()
        status, _ = await conn.send(target.request)
        pool.release(conn)
        return status

    # A spike: 8 requests at once, so 8 connections, each of which served a request
    # (uvicorn starts a connection's keep-alive clock when an answer is complete).
    assert await asyncio.gather(*(one() for _ in range(8))) == [200] * 8
    await asyncio.sleep(KEEP_ALIVE + 0.5)  # idle past the server's keep-alive

    assert await asyncio.gather(*(one() for _ in range(8))) == [200] * 8
    pool.close()


async def test_connections_idle_past_the_expiry_are_not_reused(target: Target) -> None:
    pool = Pool(target, expiry=0.2)
    await pool.fill(1)
    [(first, _)] = pool._idle
    await asyncio.sleep(0.3)
    conn = await pool.acquire()
    assert conn is not first
    conn.close()
    pool.close()
