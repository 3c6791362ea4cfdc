"""Schemathesis against each service's own OpenAPI document, in-process, on the real stack.

For every generated request, valid or not: never a 5xx; and a rejected one
(4xx) leaves no job, no generation and no pending idempotency claim behind. At
the end, once the outboxes are drained, billing holds exactly one usage row per
generation and one known job per job: no event from a rejected request, none
lost from an accepted one.

Hypothesis drives plain synchronous functions, so the stack runs in an event
loop of its own on a thread, and each request is handed to it.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Err
from schemathesis.openapi.loaders import from_dict

from contracts.topology import Topology
from tests.support.auth import bearer
from tests.support.broker import delete_topology
from tests.support.databases import ServiceDatabases, clone_databases, drop_databases
from tests.support.env import RUN_ID
from tests.support.stack import Stack, start_stack

T = TypeVar("T")
Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Any]

EXAMPLES = 80  # per operation and variant: the whole module stays well under 90 s
SERVICES = ("question_gen", "jobs", "billing")

# What a request may leave behind, counted before and after each one.
COUNTS = {
    "question_gen": (
        "SELECT (SELECT count(*) FROM generations)"
        " + (SELECT count(*) FROM idempotency_keys WHERE status_code IS NULL)"
    ),
    "jobs": (
        "SELECT (SELECT count(*) FROM jobs)"
        " + (SELECT count(*) FROM idempotency_keys WHERE status_code IS NULL)"
    ),
}


class LoopThread:
    """An event loop on a thread of its own; `run` waits for a coroutine to finish there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Live:
    runner: LoopThread
    stack: Stack
    dbs: ServiceDatabases
    company: uuid.UUID
    statuses: Counter[str] = field(default_factory=Counter)
    connections: dict[str, asyncpg.Connection] = field(default_factory=dict)

    def count(self, service: str) -> int:
        async def query() -> int:
            conn = self.connections.get(service)
            if conn is None:
                conn = self.connections[service] = await asyncpg.connect(getattr(self.dbs, service))
            value: int = await conn.fetchval(COUNTS[service])
            return value

        return self.runner.run(query())

    def send(self, service: str, request: dict[str, Any]) -> httpx.Response:
        client = self.stack.clients[service]
        return self.runner.run(client.request(**request))


@pytest.fixture(scope="module")
def live(database_templates: None) -> Iterator[Live]:
    runner = LoopThread()
    dbs, names = runner.run(clone_databases())
    prefix = f"{RUN_ID}.fuzz{uuid.uuid4().hex[:6]}."
    running = start_stack(dbs, prefix)
    stack = runner.run(running.__aenter__())
    state = Live(runner, stack, dbs, uuid.uuid4())
    try:
        yield state
    finally:
        for conn in state.connections.values():
            runner.run(conn.close())
        runner.run(running.__aexit__(None, None, None))
        runner.run(delete_topology(Topology(prefix)))
        runner.run(drop_databases(names))
        runner.close()


def as_httpx(case: Case) -> dict[str, Any]:
    """The case as `httpx.AsyncClient.request` arguments."""
    sent = case.as_transport_kwargs(base_url="http://service")
    request: dict[str, Any] = {
        "method": sent["method"],
        "url": sent["url"].removeprefix("http://service"),
        "headers": sent.get("headers") or {},
        "params": sent.get("params"),
    }
    if "json" in sent:
        request["json"] = sent["json"]
    elif sent.get("data") is not None:
        request["content"] = sent["data"]
    return request


def operations(service: str) -> list[tuple[str, Operation]]:
    from services.billing.main import create_app as create_billing
    from services.jobs.main import create_app as create_jobs
    from services.question_gen.main import create_app as create_questions

    factories: dict[str, Callable[[], FastAPI]] = {
        "question_gen": create_questions,
        "jobs": create_jobs,
        "billing": create_billing,
    }
    schema = from_dict(factories[service]().openapi())
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # an invalid document fails here, at collection
        operation = result.ok()
        found.append((f"{service} {operation.method.upper()} {operation.path}", operation))
    return found


def variants(operation: Operation) -> list[tuple[GenerationMode, str]]:
    """Valid data and (where there is something to break) invalid data, with a valid token;
    and valid data with whatever token, or none, schemathesis makes up."""
    raw = operation.definition.raw
    found = [(GenerationMode.POSITIVE, "valid")]
    if raw.get("parameters") or raw.get("requestBody"):
        found.append((GenerationMode.NEGATIVE, "valid"))
    if raw.get("security") or operation.path.startswith("/api/"):
        found.append((GenerationMode.POSITIVE, "generated"))
    return found


CASES = [
    pytest.param(service, name, operation, mode, token, id=f"{name} {mode.value} {token}-token")
    for service in SERVICES
    for name, operation in operations(service)
    for mode, token in variants(operation)
]


@pytest.mark.parametrize(("service", "name", "operation", "mode", "token"), CASES)
def test_no_server_error_and_rejected_requests_change_nothing(
    live: Live,
    service: str,
    name: str,
    operation: Operation,
    mode: GenerationMode,
    token: str,
) -> None:
    authorized = bearer(live.company)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Case) -> None:
        request = as_httpx(case)
        if token == "valid":  # so that what lies behind authentication is explored
            headers = {k: v for k, v in request["headers"].items() if k.lower() != "authorization"}
            request["headers"] = {**headers, **authorized}
        counted = service in COUNTS
        before = live.count(service) if counted else 0
        response = live.send(service, request)
        live.statuses[f"{response.status_code // 100}xx"] += 1
        assert response.status_code < 500, (name, request, response.text)
        if counted and 400 <= response.status_code < 500:
            assert live.count(service) == before, ("a rejected request wrote", request)

    check()


def test_every_accepted_request_billed_once_and_no_rejected_one(live: Live) -> None:
    """After the fuzzing above: the outboxes drain, and billing matches the services' rows."""

    async def ids(database: str, query: str) -> set[uuid.UUID]:
        conn = await asyncpg.connect(database)
        try:
            return {row[0] for row in await conn.fetch(query)}
        finally:
            await conn.close()

    async def pending() -> int:
        total = 0
        for database in (live.dbs.question_gen, live.dbs.jobs):
            conn = await asyncpg.connect(database)
            try:
                total += await conn.fetchval("SELECT count(*) FROM outbox")
            finally:
                await conn.close()
        return total

    async def settled() -> tuple[set[uuid.UUID], ...]:
        for _ in range(300):
            if await pending() == 0:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the last events on their way to billing
        return (
            await ids(live.dbs.question_gen, "SELECT id FROM generations"),
            await ids(live.dbs.billing, "SELECT event_id FROM question_generation_usage"),
            await ids(live.dbs.jobs, "SELECT id FROM jobs"),
            await ids(live.dbs.billing, "SELECT job_id FROM known_jobs"),
        )

    generations, usage, jobs, known = live.runner.run(settled())
    print(
        f"FIGURES fuzz statuses={dict(live.statuses)} "
        f"generations={len(generations)} jobs={len(jobs)}"
    )
    assert usage == generations
    assert known == jobs
