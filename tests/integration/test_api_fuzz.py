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
import base64
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import asyncpg
import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


# ---------------------------------------------------------------- the read routes at their edges

# Valid by their types but at the edges of what can be written: the first and last instants
# of the calendar in every offset (some fall outside it in UTC), month ends, leap days.
EDGE_TIMES = [
    "0001-01-01T00:00:00",
    "0001-01-01T00:59:59.999999",
    "0001-01-02T00:00:00",
    "1970-01-01T00:00:00",
    "2024-02-29T23:59:59",
    "2026-12-31T23:30:00",
    "9998-12-31T23:59:59",
    "9999-01-01T00:00:00",
    "9999-12-31T00:00:00",
    "9999-12-31T23:30:00",
    "9999-12-31T23:59:59.999999",
]
OFFSETS = ["Z", "+00:00", "+01:00", "-01:00", "+14:00", "-12:00", "+23:59", "-23:59"]
EDGE_DAYS = ["0001-01-01", "0001-01-02", "2024-02-29", "9998-12-31", "9999-12-30", "9999-12-31"]
EDGE_PERIODS = ["0001-01", "0001-02", "9998-12", "9999-01", "9999-12", "0000-12", "2026-13"]
EDGE_INTEGERS = [-(2**63), -1, 0, 1, 2, 499, 500, 501, 1000, 1001, 2**31, 2**63, 10**30]
HUGE_NUMBERS = ["1E+300000", "-1E+300000", "NaN", "Infinity", "9" * 40, "-" + "9" * 40, "1e-9999"]


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def instants() -> st.SearchStrategy[str]:
    ordinary = st.datetimes().map(lambda moment: moment.isoformat())  # naive: offsets follow
    return st.builds(
        "".join, st.tuples(st.sampled_from(EDGE_TIMES) | ordinary, st.sampled_from(OFFSETS))
    )


def forged_cursors(company: uuid.UUID) -> st.SearchStrategy[str]:
    """Cursors in the shape each list hands out, carrying what no list would: instants off
    the calendar, numbers past any column, another company; and plain garbage."""
    ids = st.uuids().map(str)
    numbers = st.sampled_from(HUGE_NUMBERS) | st.integers().map(str)
    keys = st.lists(instants() | numbers | ids, min_size=2, max_size=2)
    return st.one_of(
        st.builds(lambda at, id_: _b64(f"{at}|{id_}"), instants(), ids),
        st.builds(lambda key: _b64(json.dumps({"s": "0" * 16, "k": key})), keys),
        st.builds(lambda number, id_: _b64(f"{number}|{id_}|{'0' * 12}"), numbers, ids),
        st.builds(
            lambda owner, number: _b64(f"webhook-attempts|{owner}|{number}"),
            st.sampled_from([str(company), str(uuid.uuid4())]),
            numbers,
        ),
        st.text(max_size=60),
    )


def query_values(name: str, schema: dict[str, Any], company: uuid.UUID) -> st.SearchStrategy[Any]:
    """What to send as the parameter `name` of this schema: its edges, and junk of its kind."""
    kinds = [schema, *schema.get("anyOf", [])]
    formats = {kind.get("format") for kind in kinds}
    types = {kind.get("type") for kind in kinds}
    if name == "cursor":
        return forged_cursors(company)
    if name == "period":
        return st.sampled_from(EDGE_PERIODS) | st.text(max_size=8)
    if "date-time" in formats:
        return instants()
    if "date" in formats:
        return st.sampled_from(EDGE_DAYS) | st.dates().map(str)
    if "uuid" in formats:
        return st.uuids().map(str) | st.just(str(uuid.UUID(int=0)))
    if "integer" in types:
        return st.sampled_from(EDGE_INTEGERS) | st.integers()
    if "boolean" in types:
        return st.sampled_from(["true", "false", "1", "maybe"])
    enums = [value for kind in kinds for value in kind.get("enum", [])]
    if enums:
        return st.sampled_from(enums)
    return st.text(max_size=40) | st.sampled_from(["=1+2", "-", "@", "\t", "0001-01"])


def read_routes() -> list[Any]:
    return [
        pytest.param(service, operation, id=name)
        for service in SERVICES
        for name, operation in operations(service)
        if operation.method.upper() == "GET"
    ]


@pytest.mark.parametrize(("service", "operation"), read_routes())
def test_no_read_route_answers_5xx_to_any_query_at_its_edges(
    live: Live, service: str, operation: Operation
) -> None:
    """Each read route, with its query and path parameters drawn from their edges (instants
    that leave the calendar once in UTC, periods of the years 1 and 9999, forged cursors,
    limits past a bigint) and any of them left out: a 2xx or a 4xx, never a 5xx."""
    authorized = bearer(live.company)
    parameters = operation.definition.raw.get("parameters", [])

    def values(parameter: dict[str, Any]) -> st.SearchStrategy[Any]:
        drawn = query_values(parameter["name"], parameter.get("schema", {}), live.company)
        return drawn if parameter.get("required") else st.none() | drawn

    @settings(
        max_examples=EXAMPLES * 2,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(drawn=st.fixed_dictionaries({p["name"]: values(p) for p in parameters}))
    def check(drawn: dict[str, Any]) -> None:
        path = operation.path
        params = {}
        for parameter in parameters:
            value = drawn[parameter["name"]]
            if parameter["in"] == "path":
                text = quote(str(value), safe="") or "x"
                path = path.replace("{" + parameter["name"] + "}", text)
            elif value is not None:
                params[parameter["name"]] = value
        request = {"method": "GET", "url": path, "params": params, "headers": authorized}
        response = live.send(service, request)
        assert response.status_code < 500, (path, params, response.text)

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
