"""Composition root of the jobs service."""

from __future__ import annotations

from fastapi import FastAPI

from services.jobs.api import ERRORS, router
from services.jobs.config import Settings
from services.servicekit.http import service_app
from services.servicekit.runtime import publisher_runtime
from services.servicekit.tracing import Tracing

SERVICE = "jobs"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    tracing = Tracing.from_environment(SERVICE)
    return service_app(
        service=SERVICE,
        title="Jobs service",
        description="Stores jobs and announces each one with the draft it was made from.",
        settings=settings,
        runtime=lambda: publisher_runtime(settings, app_id=SERVICE, tracing=tracing),
        routers=[router],
        errors=ERRORS,
        tracing=tracing,
    )
