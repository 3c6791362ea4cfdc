"""Every HTTP service's FastAPI app: errors, health, metrics, correlation, traces, its runtime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, TypeVar

import asyncpg
import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.servicekit.body_limit import BodyLimitMiddleware
from services.servicekit.health import Check, ChecksFactory, health_router
from services.servicekit.logs import CorrelationMiddleware, configure_logging
from services.servicekit.metrics import HttpMetricsMiddleware
from services.servicekit.pagination import CursorSeal
from services.servicekit.problems import ErrorMap, install_problem_handlers
from services.servicekit.settings import ServiceSettings
from services.servicekit.tracing import Tracing

log = structlog.get_logger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


class Runtime(Protocol):
    """What a service holds while it runs (pool, broker, ...), and how to tell it is ready."""

    def readiness(self) -> Mapping[str, Check]: ...


R = TypeVar("R", bound=Runtime)


def service_app(
    *,
    service: str,
    title: str,
    description: str,
    settings: ServiceSettings,
    runtime: Callable[[], AbstractAsyncContextManager[R]],
    routers: Sequence[APIRouter],
    errors: ErrorMap | None = None,
    on_start: Callable[[FastAPI, R], AbstractAsyncContextManager[object]] | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    """A service's app: logging configured, `runtime` opened for its lifespan as
    `app.state.runtime` (and readiness read from it), then `on_start` for what the
    service adds on top of it. `tracing` (by default, as the environment says) gives
    every request a server span, and exports what is left when the app stops."""
    configure_logging(service, settings.log_format, settings.log_level)
    tracing = tracing or Tracing.from_environment(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warning = settings.development_warning()
        if warning is not None:
            log.warning(warning, environment=settings.environment)
        try:
            async with runtime() as running:
                app.state.runtime = running
                if on_start is None:
                    yield
                    return
                async with on_start(app, running):
                    yield
        finally:
            await asyncio.to_thread(tracing.shutdown)

    app = build_app(
        title=title,
        description=description,
        settings=settings,
        lifespan=lifespan,
        routers=routers,
        readiness=_runtime_readiness,
        errors=errors,
    )
    tracing.instrument(app)
    return app


def get_pool(request: Request) -> asyncpg.Pool:
    """The database pool of the service's runtime, for a route to take as a dependency."""
    pool: asyncpg.Pool = request.app.state.runtime.pool
    return pool


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]


def get_clock(request: Request) -> Callable[[], datetime]:
    """What time it is: `app.state.clock` when set (tests set it), else UTC now."""
    clock: Callable[[], datetime] | None = getattr(request.app.state, "clock", None)
    return clock or (lambda: datetime.now(UTC))


Clock = Annotated[Callable[[], datetime], Depends(get_clock)]


def get_cursor_seal(request: Request) -> CursorSeal:
    """The seal of the service's cursors, keyed from its secret (every replica shares it)."""
    seal: CursorSeal | None = getattr(request.app.state, "cursor_seal", None)
    if seal is None:
        settings: ServiceSettings = request.app.state.settings
        seal = CursorSeal.from_secret(settings.auth_jwt_secret.get_secret_value())
        request.app.state.cursor_seal = seal
    return seal


Cursors = Annotated[CursorSeal, Depends(get_cursor_seal)]


def _runtime_readiness(request: Request) -> Mapping[str, Check]:
    running: Runtime = request.app.state.runtime
    return running.readiness()


def build_app(
    *,
    title: str,
    description: str,
    settings: ServiceSettings,
    lifespan: Lifespan,
    routers: Sequence[APIRouter],
    readiness: ChecksFactory = _runtime_readiness,
    errors: ErrorMap | None = None,
) -> FastAPI:
    """The app with its lifespan given as is; `service_app` is the usual way in."""
    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)
    app.state.settings = settings
    install_problem_handlers(app, errors)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(CorrelationMiddleware)
    app.include_router(health_router(readiness))

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app
