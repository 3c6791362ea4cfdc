"""Composition root of billing: the worker and its HTTP read API in one process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.billing.api import router
from services.billing.config import Settings
from services.billing.runtime import BillingRuntime
from services.servicekit.http import build_app
from services.servicekit.logs import configure_logging

SERVICE = "billing"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(SERVICE, settings.log_format, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await BillingRuntime.open(settings)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.close()

    return build_app(
        title="Billing service",
        description="Usage billed exactly once per generation; drafts reconciled onto jobs.",
        settings=settings,
        lifespan=lifespan,
        routers=[router],
        readiness=lambda request: request.app.state.runtime.readiness(),
    )
