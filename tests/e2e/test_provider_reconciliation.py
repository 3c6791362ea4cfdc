"""End to end: what the provider will invoice, against what billing's ledger of calls holds.

Generations through the running question and billing services, the real `openai` SDK
against the fake LLM (`tests.support.fake_llm`): one answered, one malformed answer,
one rate limited then answered, one past its deadline. Two are billed; four calls cost
tokens. The provider's usage API (`tests.support.fake_usage`) then reports what the
fake LLM served, as a provider does: every request that reached the model, with the
usage its answer said, and for the request cut off by the timeout its prompt counted
in the model's encoding (the provider's tokenizer; the timeout's output, never sent,
counts nothing). The 429 reached no model: the provider neither counts nor charges it.

A reconciliation run three days later (so that the day is settled): matched, because
the ledger of calls holds the calls that billed nothing too.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.question_gen.tokens import Tokenizer
from tests.e2e.test_llm_calls import published_calls
from tests.e2e.test_question_llm import MODEL, ask, llm_settings
from tests.support.auth import bearer
from tests.support.databases import ServiceDatabases
from tests.support.fake_llm import (
    DEFAULT_MODEL,
    completion,
    questions,
    rate_limited,
    running_fake_llm,
)
from tests.support.fake_usage import ADMIN_KEY, Usage, running_fake_usage
from tests.support.stack import start_stack

OPERATOR = bearer(uuid.uuid4(), user="operator@example.com", roles=["platform:admin"])


async def test_calls_that_billed_nothing_are_in_the_ledger_so_the_provider_matches(
    dbs: ServiceDatabases, prefix: str
) -> None:
    counter = Tokenizer(MODEL)
    await asyncio.to_thread(counter.load)  # the service counts with it too: never the rough rule
    company = uuid.uuid4()
    with running_fake_llm() as llm:
        async with (
            running_fake_usage() as provider,
            start_stack(
                dbs,
                prefix,
                services=("question_gen", "billing"),
                question_overrides=llm_settings(llm.url, llm_timeout_seconds=1.0),
                billing_overrides={
                    "openai_admin_key": ADMIN_KEY,
                    "openai_admin_base_url": provider.url,
                    "reconciliation_daily": False,
                },
            ) as stack,
        ):
            day = datetime.now(UTC).date()
            llm.enqueue(
                questions(4, prompt_tokens=512, completion_tokens=734),
                completion("Here are your questions: 1. Why Python?"),  # 321 in, 123 out
                rate_limited(retry_after_ms=10),
                questions(3, prompt_tokens=300, completion_tokens=90),
                questions(10, delay=30),
            )
            assert (await ask(stack, company, count=4)).status_code == 200
            assert (await ask(stack, company)).status_code == 502
            assert (await ask(stack, company, count=3)).status_code == 200
            assert (await ask(stack, company)).status_code == 504
            calls = await published_calls(stack, company, 5)
            assert sorted(call["outcome"] for call in calls) == [
                "billed",
                "billed",
                "failed",
                "failed",
                "timeout",
            ]

            # What the provider counts: the fake LLM's four requests that reached the model.
            received = llm.requests
            assert len(received) == 5
            cut_off = counter.prompt(received[4].body["messages"])
            for usage in (
                Usage(1, 512, 0, 734),
                Usage(1, 321, 0, 123),
                Usage(1, 300, 0, 90),
                Usage(1, cut_off, 0, 0),
            ):
                provider.add(day, DEFAULT_MODEL, usage)

            # Three days later the day is settled.
            later = datetime.now(UTC) + timedelta(days=3)
            stack.apps["billing"].state.clock = lambda: later
            response = await stack.billing.post(
                "/api/billing/admin/reconciliation/run",
                params={"from": day.isoformat(), "to": day.isoformat()},
                headers=OPERATOR,
            )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["runs"][0]["status"] == "succeeded"
    [row] = body["days"]
    assert (row["date"], row["model"], row["status"]) == (day.isoformat(), MODEL, "matched")
    assert (
        row["ours"]
        == row["theirs"]
        == {
            "requests": 4,
            "inputTokens": 512 + 321 + 300 + cut_off,
            "cachedInputTokens": 0,
            "outputTokens": 734 + 123 + 90,
        }
    )
