"""Bodies over the limit are refused with 413 before they are read whole, and change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.servicekit.body_limit import BodyLimitMiddleware
from services.servicekit.problems import install_problem_handlers

LIMIT = 1024


def app_with(handled: list[Any]) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=LIMIT)

    @app.post("/things")
    async def create(body: dict[str, Any]) -> dict[str, str]:
        handled.append(body)
        return {"ok": "yes"}

    return app


async def post(app: FastAPI, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/things", **kwargs)


async def test_a_body_within_the_limit_goes_through() -> None:
    handled: list[Any] = []
    response = await post(app_with(handled), json={"text": "x" * (LIMIT - 20)})
    assert response.status_code == 200
    assert len(handled) == 1


async def test_a_declared_length_over_the_limit_is_refused_before_the_route() -> None:
    handled: list[Any] = []
    response = await post(app_with(handled), json={"text": "x" * LIMIT})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert str(LIMIT) in response.json()["detail"]
    assert handled == []


@pytest.mark.parametrize("chunk", [100, 4096])
async def test_a_streamed_body_is_cut_off_once_it_passes_the_limit(chunk: int) -> None:
    handled: list[Any] = []
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"text": "'
        for _ in range(50 * 1024 * 1024 // chunk):  # 50 MB, if it were all read
            sent += chunk
            yield b"x" * chunk

    response = await post(app_with(handled), content=endless())

    assert response.status_code == 413
    assert handled == []
    assert sent <= LIMIT + chunk  # read up to the chunk that crossed the limit, no further


async def test_a_body_longer_than_it_declared_is_counted_too() -> None:
    handled: list[Any] = []

    async def more() -> AsyncIterator[bytes]:
        yield b"x" * (LIMIT * 4)

    response = await post(app_with(handled), content=more(), headers={"Content-Length": "10"})
    assert response.status_code in (400, 413)
    assert handled == []
