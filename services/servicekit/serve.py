"""Run a service's app factory on uvicorn (uvloop, httptools), as `make dev` and compose do."""

from __future__ import annotations

import uvicorn

from services.servicekit.settings import ServiceSettings


def serve(factory: str, settings: ServiceSettings) -> None:
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.graceful_timeout_seconds),
        timeout_keep_alive=settings.http_keep_alive_seconds,
    )
