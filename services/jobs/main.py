"""Composition root of the jobs service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.jobs.api import router
from services.jobs.config import Settings
from services.servicekit.http import build_app
from services.servicekit.logs import configure_logging
from services.servicekit.runtime import publisher_runtime

SERVICE = "jobs"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(SERVICE, settings.log_format, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with publisher_runtime(settings, app_id=SERVICE) as runtime:
            app.state.runtime = runtime
            yield

    return build_app(
        title="Jobs service",
        description="Stores jobs and announces each one with the draft it was made from.",
        settings=settings,
        lifespan=lifespan,
        routers=[router],
        readiness=lambda request: request.app.state.runtime.readiness(),
    )
