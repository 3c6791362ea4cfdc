"""Budgets enforced by the question service before the LLM call, against the real services.

Billing's API sets the limit and the price; billing publishes them; the question
service consumes them and reserves each request's worst case in its own database.
Concurrent requests, a question service killed mid-burst and two question service
processes never pass the limit together, and billing's ledger agrees with the
question service's counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from contracts.periods import period_of
from tests.support.auth import bearer
from tests.support.databases import ServiceDatabases
from tests.support.fake_llm import FakeLlm, questions, running_fake_llm
from tests.support.prices import price, set_price
from tests.support.processes import SMALL_POOL, ServiceProcess, free_port, service_env
from tests.support.stack import Stack, start_stack
from tests.support.waiting import eventually

GENERATE = "/api/ai/generate-questions"
TEN = {"draftJobId": "draft-budget", "jobDescription": "Rust engineer", "numberOfQuestions": 10}
# Within 2 seconds of a change, by the contract.
TAKES_EFFECT_SECONDS = 2.0


def billing_admin(company: UUID) -> dict[str, str]:
    return bearer(company, user="finance@example.com", roles=["billing:admin"])


def platform_admin() -> dict[str, str]:
    return bearer(uuid.uuid4(), user="operator@example.com", roles=["platform:admin"])


async def set_limit(stack: Stack, company: UUID, limit: str | None) -> None:
    response = await stack.billing.put(
        "/api/billing/budget",
        json={"monthlyLimit": limit, "thresholds": [], "webhookUrl": None},
        headers=billing_admin(company),
    )
    assert response.status_code == 200, response.text


async def known_limit(stack: Stack, company: UUID) -> Decimal | None:
    rows = await stack.fetch(
        stack.dbs.question_gen,
        "SELECT monthly_limit FROM budget_limits WHERE company_id = $1",
        company,
    )
    return rows[0]["monthly_limit"] if rows else None


async def limit_known(stack: Stack, company: UUID, limit: str) -> None:
    """Wait until the question service has the limit billing published."""
    await eventually(
        lambda: known_limit(stack, company), until=lambda found: found == Decimal(limit)
    )


async def billed(stack: Stack, company: UUID) -> tuple[int, Decimal]:
    """Billing's ledger: usage rows and their total cost."""
    [row] = await stack.fetch(
        stack.dbs.billing,
        "SELECT count(*) AS n, COALESCE(sum(cost), 0) AS cost"
        " FROM question_generation_usage WHERE company_id = $1",
        company,
    )
    return int(row["n"]), row["cost"]


async def generations(stack: Stack, company: UUID) -> int:
    [row] = await stack.fetch(
        stack.dbs.question_gen,
        "SELECT count(*) AS n FROM generations WHERE company_id = $1",
        company,
    )
    return int(row["n"])


async def counter(stack: Stack, company: UUID) -> dict[str, Decimal]:
    """The question service's counter of the current period."""
    rows = await stack.fetch(
        stack.dbs.question_gen,
        "SELECT settled, billed, reserved FROM budget_periods"
        " WHERE company_id = $1 AND period = $2",
        company,
        period_of(datetime.now(UTC)),
    )
    return dict(rows[0]) if rows else {}


async def all_billed(stack: Stack, company: UUID) -> tuple[int, Decimal]:
    """Once every generation the question service recorded is in billing's ledger."""
    expected = await generations(stack, company)
    return await eventually(
        lambda: billed(stack, company), until=lambda found: found[0] == expected, timeout=30
    )


async def counters_agree(stack: Stack, company: UUID, total: Decimal) -> None:
    """The question service's counter equals billing's total, and billing told it so."""
    expected = {"settled": total, "billed": total, "reserved": Decimal("0.0000")}
    await eventually(lambda: counter(stack, company), until=lambda found: found == expected)


def statuses(responses: list[httpx.Response | BaseException]) -> dict[object, int]:
    seen: dict[object, int] = {}
    for response in responses:
        key: object = (
            response.status_code
            if isinstance(response, httpx.Response)
            else type(response).__name__
        )
        seen[key] = seen.get(key, 0) + 1
    return seen


def assert_refusals_are_problems(responses: list[httpx.Response | BaseException]) -> None:
    for response in responses:
        if isinstance(response, httpx.Response) and response.status_code == 402:
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["type"].endswith("budget-exceeded")


@pytest.fixture
async def stack(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Stack]:
    async with start_stack(dbs, prefix, services=("billing", "question_gen")) as running:
        yield running


async def test_forty_concurrent_requests_at_a_limit_of_one(stack: Stack, company: UUID) -> None:
    await set_limit(stack, company, "1.0000")
    await limit_known(stack, company, "1.0000")

    responses = await asyncio.gather(
        *(stack.questions.post(GENERATE, json=TEN, headers=bearer(company)) for _ in range(40))
    )

    assert statuses(list(responses)) == {200: 10, 402: 30}
    assert_refusals_are_problems(list(responses))
    assert await all_billed(stack, company) == (10, Decimal("1.0000"))
    budget = await stack.billing.get("/api/billing/budget", headers=bearer(company))
    assert budget.json()["spent"] == "1.0000"
    await counters_agree(stack, company, Decimal("1.0000"))


async def test_a_limit_change_takes_effect_within_two_seconds(stack: Stack, company: UUID) -> None:
    async def status() -> int:
        response = await stack.questions.post(GENERATE, json=TEN, headers=bearer(company))
        return response.status_code

    await set_limit(stack, company, "0.0001")
    await eventually(status, until=lambda code: code == 402)

    async def seen_within(change: Callable[[], Awaitable[None]], expected: int) -> float:
        await change()
        changed = time.monotonic()
        await eventually(status, until=lambda code: code == expected, timeout=10)
        return time.monotonic() - changed

    raised = await seen_within(lambda: set_limit(stack, company, "1.0000"), 200)
    lowered = await seen_within(lambda: set_limit(stack, company, "0.1000"), 402)
    assert raised < TAKES_EFFECT_SECONDS
    assert lowered < TAKES_EFFECT_SECONDS


async def test_a_price_change_takes_effect_within_two_seconds(stack: Stack, company: UUID) -> None:
    # A limit nothing fits: every answer is a 402 naming the worst case at the price now.
    await set_limit(stack, company, "0.0001")
    fifty = {**TEN, "numberOfQuestions": 50}

    async def worst_case() -> str | None:
        response = await stack.questions.post(GENERATE, json=fifty, headers=bearer(company))
        return response.json().get("cost") if response.status_code == 402 else None

    assert await eventually(worst_case, until=lambda cost: cost == "0.5000") == "0.5000"

    starts = datetime.now(UTC) + timedelta(seconds=0.5)
    response = await set_price(stack, company, price(starts, "0.2000", "10"), platform_admin())
    assert response.status_code == 201, response.text
    await eventually(worst_case, until=lambda cost: cost == "1.1000", timeout=10)
    seen_after = datetime.now(UTC) - starts
    assert seen_after < timedelta(seconds=TAKES_EFFECT_SECONDS)


# -- separate processes ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def question_processes(
    stack: Stack, prefix: str, log_dir: Path, count: int, **env: str
) -> AsyncIterator[list[ServiceProcess]]:
    processes = []
    for number in range(count):
        port = free_port()
        variables = service_env(
            "question_gen",
            database_url=stack.dbs.question_gen,
            prefix=prefix,
            port=port,
            extra={**SMALL_POOL, "DB_POOL_MAX_SIZE": "20", **env},
        )
        process = ServiceProcess(
            "services.question_gen", variables, port=port, log=log_dir / f"questions-{number}.log"
        )
        processes.append(process)
    try:
        for process in processes:
            await process.start()
        for process in processes:
            await process.wait_ready(60)
        yield processes
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                await process.stop(timeout=20)


async def post(
    client: httpx.AsyncClient, process: ServiceProcess, company: UUID
) -> httpx.Response | BaseException:
    try:
        return await client.post(
            process.base_url + GENERATE, json=TEN, headers=bearer(company), timeout=30
        )
    except httpx.TransportError as exc:
        return exc


@pytest.fixture
async def billing_only(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Stack]:
    async with start_stack(dbs, prefix, services=("billing",)) as running:
        yield running


async def test_two_question_service_processes_share_one_limit(
    billing_only: Stack, prefix: str, tmp_path: Path, company: UUID
) -> None:
    stack = billing_only
    await set_limit(stack, company, "1.0000")
    async with (
        question_processes(stack, prefix, tmp_path, 2) as (first, second),
        httpx.AsyncClient() as client,
    ):
        await limit_known(stack, company, "1.0000")
        responses = await asyncio.gather(
            *(post(client, (first, second)[n % 2], company) for n in range(40))
        )
        assert statuses(list(responses)) == {200: 10, 402: 30}
        assert_refusals_are_problems(list(responses))
        assert await all_billed(stack, company) == (10, Decimal("1.0000"))
        await counters_agree(stack, company, Decimal("1.0000"))


@dataclass(frozen=True)
class KilledBurst:
    """A burst across a kill: the answers before it, while the dead hold, and after."""

    before: list[httpx.Response | BaseException]
    held: list[httpx.Response | BaseException]
    after: list[httpx.Response | BaseException]

    def assert_ten_then_the_rest(self) -> None:
        """Ten cut short by the kill, ten refused; refused while the dead requests hold
        their reservations; once those expired, the other ten and no more."""
        cut_short = [r for r in self.before if isinstance(r, httpx.TransportError)]
        assert (len(cut_short), statuses(self.before).get(402)) == (10, 10)
        assert statuses(self.held) == {402: 5}
        assert statuses(self.after) == {200: 10, 402: 10}


async def burst_across_a_kill(
    stack: Stack,
    prefix: str,
    tmp_path: Path,
    company: UUID,
    *,
    known: Callable[[], Awaitable[None]],
    settled: Callable[[], Awaitable[None]],
) -> KilledBurst:
    """One question-service process with room for ten generations (`known` waits until
    it knows it): twenty requests, ten of which reserve and wait for the LLM; the process
    is killed before any generation is recorded, and restarted; five more while the dead
    requests' reservations hold, twenty more once they expired; then `settled` checks,
    with the process still up, what billing and the service agree on."""
    # Longer than any request here (the LLM deadline is 4 s) and than the restart, which
    # takes several seconds on a loaded machine (a restart slower than the hold would let
    # the requests below in: checked, so that such a run says so rather than fail oddly).
    hold = 15.0
    with running_fake_llm(questions(10)) as llm:
        # The first ten calls are still waiting for the LLM when the process dies, whatever
        # the machine's load: none of them may finish (and be billed) before the kill.
        llm.enqueue(*[questions(10, delay=60)] * 10)
        env = {
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": llm.url,
            "LLM_TIMEOUT_SECONDS": "4",
            "BUDGET_HOLD_SECONDS": str(hold),
        }
        async with (
            question_processes(stack, prefix, tmp_path, 1, **env) as (service,),
            httpx.AsyncClient() as client,
        ):
            await known()
            first = [asyncio.create_task(post(client, service, company)) for _ in range(20)]
            await eventually(lambda: llm_calls(llm), until=lambda calls: calls >= 10)
            await eventually(lambda: answered(first), until=lambda done: done >= 10)
            service.send(signal.SIGKILL)
            await service.wait(10)
            before = list(await asyncio.gather(*first))
            assert await generations(stack, company) == 0
            killed_at = time.monotonic()
            await service.start()
            await service.wait_ready(60)
            # Their reservations still count until they expire: then they are released.
            held = await asyncio.gather(*(post(client, service, company) for _ in range(5)))
            restarted_in = time.monotonic() - killed_at
            assert restarted_in < hold, f"the restart took {restarted_in:.1f} s, past the hold"
            await asyncio.sleep(max(0.0, killed_at + hold + 0.5 - time.monotonic()))
            after = list(await asyncio.gather(*(post(client, service, company) for _ in range(20))))
            await settled()
    return KilledBurst(before, list(held), after)


@pytest.mark.chaos  # kills a process: runs with the other fault tests, not beside them
async def test_the_limit_holds_with_the_question_service_killed_mid_burst(
    billing_only: Stack, prefix: str, tmp_path: Path, company: UUID
) -> None:
    stack = billing_only
    await set_limit(stack, company, "1.0000")

    async def settled() -> None:
        assert await all_billed(stack, company) == (10, Decimal("1.0000"))
        await counters_agree(stack, company, Decimal("1.0000"))

    burst = await burst_across_a_kill(
        stack,
        prefix,
        tmp_path,
        company,
        known=lambda: limit_known(stack, company, "1.0000"),
        settled=settled,
    )
    burst.assert_ten_then_the_rest()
    # The dead requests' reservations expired: the rest of the limit, and no more.
    assert_refusals_are_problems([*burst.before, *burst.held, *burst.after])


async def llm_calls(llm: FakeLlm) -> int:
    return llm.request_count


async def answered(tasks: list[asyncio.Task[httpx.Response | BaseException]]) -> int:
    return sum(task.done() for task in tasks)
