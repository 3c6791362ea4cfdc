"""`/healthz` (the process answers) and `/readyz` (what it depends on answers)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

Check = Callable[[], Awaitable[bool]]
ChecksFactory = Callable[[Request], Mapping[str, Check]]


async def _run(check: Check, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            return await check()
    except Exception:
        return False


def health_router(checks: ChecksFactory, *, timeout: float = 3.0) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", responses={503: {"description": "a dependency is not reachable"}})
    async def readyz(request: Request) -> JSONResponse:
        named = checks(request)
        results = await asyncio.gather(*(_run(check, timeout) for check in named.values()))
        outcome = dict(zip(named, results, strict=True))
        ready = all(results)
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": outcome},
            status_code=200 if ready else 503,
        )

    return router
