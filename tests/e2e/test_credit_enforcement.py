"""Prepaid credits enforced by the question service before the LLM call (`credit_only`).

Billing's admin API grants the credits and sets the mode; billing publishes the
account; the question service consumes it and reserves each request's worst case
against what the grants have left, less its own generations billing has not yet
recorded. Concurrent requests, two question service processes and one killed
mid-burst never overdraw, and billing's ledger agrees with the question service.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from tests.e2e.test_budget_enforcement import (
    GENERATE,
    TAKES_EFFECT_SECONDS,
    TEN,
    all_billed,
    burst_across_a_kill,
    platform_admin,
    post,
    question_processes,
    set_limit,
    statuses,
)
from tests.support.auth import bearer
from tests.support.databases import ServiceDatabases
from tests.support.stack import Stack, start_stack
from tests.support.waiting import eventually


async def grant_credits(stack: Stack, company: UUID, amount: str) -> str:
    response = await stack.billing.post(
        f"/api/billing/admin/companies/{company}/credits",
        json={"amount": amount, "kind": "purchased", "reason": "prepaid pack"},
        headers={**platform_admin(), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    grant_id: str = response.json()["grantId"]
    return grant_id


async def void_grant(stack: Stack, company: UUID, grant_id: str) -> None:
    response = await stack.billing.post(
        f"/api/billing/admin/companies/{company}/credits/{grant_id}/void",
        headers={**platform_admin(), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 200, response.text


async def set_credit_mode(stack: Stack, company: UUID, mode: str = "credit_only") -> None:
    response = await stack.billing.put(
        f"/api/billing/admin/companies/{company}/credit-mode",
        json={"mode": mode, "lowBalanceThreshold": None},
        headers={**platform_admin(), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 200, response.text


async def known_account(stack: Stack, company: UUID) -> dict[str, object]:
    """The question service's copy of the account, as its guard counts it."""
    rows = await stack.fetch(
        stack.dbs.question_gen,
        "SELECT mode, balance, unbilled, reserved,"
        " (SELECT count(*) FROM credit_spends WHERE company_id = $1) AS spends"
        " FROM credit_accounts WHERE company_id = $1",
        company,
    )
    return dict(rows[0]) if rows else {}


async def account_known(stack: Stack, company: UUID, balance: str) -> None:
    """Wait until the question service has the account billing published."""
    await eventually(
        lambda: known_account(stack, company),
        until=lambda found: (
            found.get("mode") == "credit_only" and found.get("balance") == Decimal(balance)
        ),
    )


async def billing_balance(stack: Stack, company: UUID) -> str:
    credits = await stack.billing_json(company, "/api/billing/credits")
    balance: str = credits["balance"]
    return balance


async def accounts_agree(stack: Stack, company: UUID, balance: str) -> None:
    """Billing's balance is `balance`; the question service has it, counting nothing more."""
    assert await billing_balance(stack, company) == balance
    settled = {
        "mode": "credit_only",
        "balance": Decimal(balance),
        "unbilled": Decimal("0.0000"),
        "reserved": Decimal("0.0000"),
        "spends": 0,
    }
    await eventually(
        lambda: known_account(stack, company), until=lambda found: found == settled, timeout=15
    )


def assert_refusals_say_credits(responses: list[httpx.Response | BaseException]) -> None:
    for response in responses:
        if isinstance(response, httpx.Response) and response.status_code == 402:
            assert response.headers["content-type"].startswith("application/problem+json")
            problem = response.json()
            assert problem["type"].endswith("credits-exhausted"), problem
            assert problem["cost"] == "0.1000"


@pytest.fixture
async def stack(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Stack]:
    async with start_stack(dbs, prefix, services=("billing", "question_gen")) as running:
        yield running


@pytest.fixture
async def billing_only(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Stack]:
    async with start_stack(dbs, prefix, services=("billing",)) as running:
        yield running


async def credit_only(stack: Stack, company: UUID, amount: str = "1.0000") -> str:
    grant_id = await grant_credits(stack, company, amount)
    await set_credit_mode(stack, company)
    return grant_id


async def test_forty_concurrent_requests_on_a_balance_of_one(stack: Stack, company: UUID) -> None:
    await credit_only(stack, company)
    await account_known(stack, company, "1.0000")

    responses = await asyncio.gather(
        *(stack.questions.post(GENERATE, json=TEN, headers=bearer(company)) for _ in range(40))
    )

    assert statuses(list(responses)) == {200: 10, 402: 30}
    assert_refusals_say_credits(list(responses))
    assert await all_billed(stack, company) == (10, Decimal("1.0000"))
    await accounts_agree(stack, company, "0.0000")


async def test_a_stream_goes_through_the_same_guard(stack: Stack, company: UUID) -> None:
    await credit_only(stack, company, "0.1500")
    await account_known(stack, company, "0.1500")
    streaming = {**bearer(company), "Accept": "text/event-stream"}

    first = await stack.questions.post(GENERATE, json=TEN, headers=streaming)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("text/event-stream")
    assert "event: done" in first.text
    # 0.0500 left (billing may not have recorded the first yet: counted all the same).
    refused = await stack.questions.post(GENERATE, json=TEN, headers=streaming)
    assert refused.status_code == 402
    assert_refusals_say_credits([refused])
    five = await stack.questions.post(
        GENERATE, json={**TEN, "numberOfQuestions": 5}, headers=streaming
    )
    assert five.status_code == 200, five.text
    assert await all_billed(stack, company) == (2, Decimal("0.1500"))
    await accounts_agree(stack, company, "0.0000")


async def test_a_void_and_a_grant_take_effect_within_two_seconds(
    stack: Stack, company: UUID
) -> None:
    seen: list[int] = []

    async def status() -> int:
        response = await stack.questions.post(GENERATE, json=TEN, headers=bearer(company))
        seen.append(response.status_code)
        return response.status_code

    grant_id = await credit_only(stack, company, "5.0000")
    await account_known(stack, company, "5.0000")
    assert await status() == 200
    voided = time.monotonic()
    await void_grant(stack, company, grant_id)
    await eventually(status, until=lambda code: code == 402, timeout=10)
    assert time.monotonic() - voided < TAKES_EFFECT_SECONDS
    granted = time.monotonic()
    await grant_credits(stack, company, "0.1000")
    await eventually(status, until=lambda code: code == 200, timeout=10)
    assert time.monotonic() - granted < TAKES_EFFECT_SECONDS
    assert await status() == 402
    # What was answered was billed (one more may have been answered before the void took
    # effect, drawn from the voided grant before the void committed), and nothing more.
    answers = seen.count(200)
    assert await all_billed(stack, company) == (answers, Decimal("0.1000") * answers)
    await accounts_agree(stack, company, "0.0000")


async def test_with_a_budget_too_both_are_checked(stack: Stack, company: UUID) -> None:
    await set_limit(stack, company, "0.2000")
    await credit_only(stack, company, "0.5000")
    await account_known(stack, company, "0.5000")
    responses = [
        await stack.questions.post(GENERATE, json=TEN, headers=bearer(company)) for _ in range(3)
    ]
    assert [r.status_code for r in responses] == [200, 200, 402]
    assert responses[2].json()["type"].endswith("budget-exceeded")
    assert await all_billed(stack, company) == (2, Decimal("0.2000"))
    assert await billing_balance(stack, company) == "0.3000"


# -- separate processes ----------------------------------------------------------------------


async def test_two_question_service_processes_share_one_balance(
    billing_only: Stack, prefix: str, tmp_path: Path, company: UUID
) -> None:
    stack = billing_only
    await credit_only(stack, company)
    async with (
        question_processes(stack, prefix, tmp_path, 2) as (first, second),
        httpx.AsyncClient() as client,
    ):
        await account_known(stack, company, "1.0000")
        responses = await asyncio.gather(
            *(post(client, (first, second)[n % 2], company) for n in range(40))
        )
        assert statuses(list(responses)) == {200: 10, 402: 30}
        assert_refusals_say_credits(list(responses))
        assert await all_billed(stack, company) == (10, Decimal("1.0000"))
        await accounts_agree(stack, company, "0.0000")


@pytest.mark.chaos  # kills a process: runs with the other fault tests, not beside them
async def test_the_balance_holds_with_the_question_service_killed_mid_burst(
    billing_only: Stack, prefix: str, tmp_path: Path, company: UUID
) -> None:
    stack = billing_only
    await credit_only(stack, company)

    async def settled() -> None:
        assert await all_billed(stack, company) == (10, Decimal("1.0000"))
        await accounts_agree(stack, company, "0.0000")

    burst = await burst_across_a_kill(
        stack,
        prefix,
        tmp_path,
        company,
        known=lambda: account_known(stack, company, "1.0000"),
        settled=settled,
    )
    burst.assert_ten_then_the_rest()  # the rest of the balance, and no more
    assert_refusals_say_credits([*burst.before, *burst.held, *burst.after])
