"""The three services running in-process against the real PostgreSQL and RabbitMQ.

Each test gets its own databases and its own topology prefix, so tests never
see each other's rows or messages.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from starlette.types import ASGIApp

from contracts.topology import Topology
from services.billing.config import Settings as BillingSettings
from services.billing.main import create_app as create_billing
from services.jobs.config import Settings as JobsSettings
from services.jobs.main import create_app as create_jobs
from services.question_gen.config import Settings as QuestionSettings
from services.question_gen.llm import QuestionWriter
from services.question_gen.main import create_app as create_questions
from tests.support.auth import TEST_SECRET, bearer
from tests.support.databases import ServiceDatabases
from tests.support.env import RABBITMQ_URL
from tests.support.waiting import eventually


def common_settings(prefix: str) -> dict[str, Any]:
    return {
        "environment": "test",
        "rabbitmq_url": RABBITMQ_URL,
        "rabbitmq_topology_prefix": prefix,
        "auth_jwt_secret": TEST_SECRET,
        "log_format": "console",
        "db_pool_min_size": 1,
        "db_pool_max_size": 5,
    }


def question_settings(dbs: ServiceDatabases, prefix: str, **overrides: Any) -> QuestionSettings:
    values = {
        **common_settings(prefix),
        "QUESTION_GEN_DATABASE_URL": dbs.question_gen,
        "openai_api_key": None,
        "offline_seconds_per_question": 0.0,
        "outbox_sweep_interval_seconds": 0.5,
    }
    return QuestionSettings(**{**values, **overrides})


def jobs_settings(dbs: ServiceDatabases, prefix: str, **overrides: Any) -> JobsSettings:
    values = {
        **common_settings(prefix),
        "JOBS_DATABASE_URL": dbs.jobs,
        "outbox_sweep_interval_seconds": 0.5,
    }
    return JobsSettings(**{**values, **overrides})


def billing_settings(dbs: ServiceDatabases, prefix: str, **overrides: Any) -> BillingSettings:
    values = {**common_settings(prefix), "BILLING_DATABASE_URL": dbs.billing}
    return BillingSettings(**{**values, **overrides})


@asynccontextmanager
async def running(
    app: FastAPI, base_url: str, *, wait_ready: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan; by default, hand it over once `/readyz` says ready."""
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=60) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url=base_url, timeout=60
        ) as client,
    ):
        if wait_ready:
            await eventually(
                lambda: client.get("/readyz"),
                until=lambda response: response.status_code == 200,
                timeout=30,
            )
        yield client


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    """The app under uvicorn on a loopback port, in this event loop, lifespan included:
    a real HTTP server, for what an in-process transport cannot show (a response that
    streams, a client that disconnects). Its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(
            lambda: asyncio.sleep(0, server.started or serving.done()), timeout=30, interval=0.02
        )
        if serving.done():
            await serving  # it failed to start: raise why
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


@dataclass
class Stack:
    dbs: ServiceDatabases
    topology: Topology
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    apps: dict[str, FastAPI] = field(default_factory=dict)

    def _client(self, service: str) -> httpx.AsyncClient:
        if service not in self.clients:
            raise RuntimeError(f"{service} is not running in this stack")
        return self.clients[service]

    @property
    def questions(self) -> httpx.AsyncClient:
        return self._client("question_gen")

    @property
    def jobs(self) -> httpx.AsyncClient:
        return self._client("jobs")

    @property
    def billing(self) -> httpx.AsyncClient:
        return self._client("billing")

    async def fetch(self, database: str, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def billing_json(self, company_id: UUID, path: str, **params: Any) -> Any:
        """GET a billing path as the company's user; it must answer 200. Its JSON body."""
        response = await self.billing.get(path, params=params, headers=bearer(company_id))
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json()

    async def usage(self, company_id: UUID) -> list[asyncpg.Record]:
        return await self.fetch(
            self.dbs.billing,
            "SELECT * FROM question_generation_usage WHERE company_id = $1 ORDER BY created_at",
            company_id,
        )


@asynccontextmanager
async def start_stack(
    dbs: ServiceDatabases,
    prefix: str,
    *,
    services: tuple[str, ...] = ("question_gen", "jobs", "billing"),
    writer: QuestionWriter | None = None,
    question_overrides: dict[str, Any] | None = None,
    jobs_overrides: dict[str, Any] | None = None,
    billing_overrides: dict[str, Any] | None = None,
    serve_questions: bool = False,
) -> AsyncIterator[Stack]:
    """The services in-process; with `serve_questions`, the question service under a real
    uvicorn server on loopback (`stack.questions` then talks to it over TCP)."""
    stack = Stack(dbs=dbs, topology=Topology(prefix))
    async with AsyncExitStack() as exits:
        if "billing" in services:  # first, so that its consumer is there for the others' events
            app = create_billing(billing_settings(dbs, prefix, **(billing_overrides or {})))
            stack.apps["billing"] = app
            stack.clients["billing"] = await exits.enter_async_context(
                running(app, "http://billing")
            )
        if "question_gen" in services:
            app = create_questions(
                question_settings(dbs, prefix, **(question_overrides or {})), writer=writer
            )
            stack.apps["question_gen"] = app
            if serve_questions:
                url = await exits.enter_async_context(served(app))
                client = httpx.AsyncClient(base_url=url, timeout=60)
                stack.clients["question_gen"] = await exits.enter_async_context(client)
                await eventually(
                    lambda: client.get("/readyz"),
                    until=lambda response: response.status_code == 200,
                    timeout=30,
                )
            else:
                stack.clients["question_gen"] = await exits.enter_async_context(
                    running(app, "http://questions")
                )
        if "jobs" in services:
            app = create_jobs(jobs_settings(dbs, prefix, **(jobs_overrides or {})))
            stack.apps["jobs"] = app
            stack.clients["jobs"] = await exits.enter_async_context(running(app, "http://jobs"))
        yield stack


@asynccontextmanager
async def start_billing(
    dbs: ServiceDatabases, prefix: str, **overrides: Any
) -> AsyncIterator[Stack]:
    """Billing alone, with these settings overridden."""
    async with start_stack(
        dbs, prefix, services=("billing",), billing_overrides=overrides
    ) as stack:
        yield stack
