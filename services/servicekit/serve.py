"""Run a service's app factory on uvicorn (uvloop, httptools), as `make dev` and compose do."""

from __future__ import annotations

import importlib

import uvicorn

from services.servicekit import gc_tuning
from services.servicekit.settings import ServiceSettings


def serve(factory: str, settings: ServiceSettings) -> None:
    """`factory` is `module:function`, called with no argument to build the app."""
    module, _, name = factory.partition(":")
    app = getattr(importlib.import_module(module), name)()
    gc_tuning.tune()  # after the app is built: what start-up made is frozen
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.graceful_timeout_seconds),
        timeout_keep_alive=settings.http_keep_alive_seconds,
    )
