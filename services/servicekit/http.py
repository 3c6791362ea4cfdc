"""The parts of every HTTP service's FastAPI app: errors, health, metrics, correlation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.servicekit.health import ChecksFactory, health_router
from services.servicekit.logs import CorrelationMiddleware
from services.servicekit.metrics import HttpMetricsMiddleware
from services.servicekit.problems import install_problem_handlers
from services.servicekit.settings import ServiceSettings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def build_app(
    *,
    title: str,
    description: str,
    settings: ServiceSettings,
    lifespan: Lifespan,
    routers: Sequence[APIRouter],
    readiness: ChecksFactory,
) -> FastAPI:
    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)
    app.state.settings = settings
    install_problem_handlers(app)
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(CorrelationMiddleware)
    app.include_router(health_router(readiness))

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app
