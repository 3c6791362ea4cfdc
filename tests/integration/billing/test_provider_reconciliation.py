"""Reconciliation against a fake of the provider's usage API, at the HTTP boundary.

The ledger's calls are real `llm_calls` rows (recorded by billing's own code, through
the broker for the HTTP tests); the provider is `tests/support/fake_usage.py`, serving
pages as OpenAI's organization usage API does. The clock is fixed: "today" is
2026-03-10 (UTC), so its last 3 days are 03-08, 03-09 and 03-10.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from contracts.events import LlmCallFinished
from services.billing.costs.calls import record_calls
from services.billing.reconciliation.provider import OpenAiUsage
from services.billing.reconciliation.run import RunOrder, ordered, reconcile
from services.billing.reconciliation.schedule import Reconciler
from services.billing.reconciliation.store import Run
from services.servicekit import db
from tests.integration.billing.conftest import record
from tests.support.auth import bearer
from tests.support.databases import ServiceDatabases
from tests.support.events import llm_call
from tests.support.fake_usage import (
    ADMIN_KEY,
    PROJECT,
    FakeUsageApi,
    Reply,
    Usage,
    days_before,
    epoch,
    rate_limited,
    running_fake_usage,
    slow,
)
from tests.support.stack import Stack, start_billing
from tests.support.waiting import eventually

TODAY = date(2026, 3, 10)
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
WEEK = days_before(TODAY, 7)  # 03-04 .. 03-10
THE_WEEK = {"from": "2026-03-04", "to": "2026-03-10"}
TOLERANCE = Decimal("1")
OPERATOR = bearer(uuid.uuid4(), user="operator@example.com", roles=["platform:admin"])
RUN = "/api/billing/admin/reconciliation/run"
LIST = "/api/billing/admin/reconciliation"
# The provider names the snapshot that answered; we record it too, or the model we asked for.
MODELS = {"gpt-4o-2024-08-06": "gpt-4o", "gpt-4o-mini-2024-07-18": "gpt-4o-mini"}


def settled(day: date) -> bool:
    return day <= TODAY - timedelta(days=3)


def week_of_calls(company: UUID, days: Sequence[date] = WEEK) -> list[LlmCallFinished]:
    """Each day, for each model: a billed call, a retry that failed with tokens, a timeout
    (recorded under the model asked for), and a 429 that carries no token."""
    calls = []
    for n, day in enumerate(days):
        at = datetime(day.year, day.month, day.day, 8 + n, tzinfo=UTC)
        for snapshot, asked in MODELS.items():
            calls += [
                llm_call(
                    company,
                    model=snapshot,
                    at=at,
                    prompt_tokens=1_000 + n,
                    cached_prompt_tokens=200,
                    completion_tokens=300,
                ),
                llm_call(company, outcome="failed", model=snapshot, at=at, prompt_tokens=900),
                llm_call(company, outcome="timeout", model=asked, at=at, completion_tokens=0),
                llm_call(
                    company,
                    outcome="failed",
                    model=asked,
                    at=at,
                    prompt_tokens=0,
                    completion_tokens=0,
                ),
            ]
    return calls


def report_calls(fake: FakeUsageApi, calls: Sequence[LlmCallFinished]) -> None:
    """The provider counts the calls that cost tokens, under the snapshot that answered."""
    snapshots = {asked: snapshot for snapshot, asked in MODELS.items()}
    for call in calls:
        if call.prompt_tokens or call.completion_tokens:
            fake.add(
                call.occurred_at.date(),
                snapshots.get(call.model, call.model),
                Usage(1, call.prompt_tokens, call.cached_prompt_tokens, call.completion_tokens),
            )


def ledger_week(fake: FakeUsageApi, company: UUID) -> list[LlmCallFinished]:
    calls = week_of_calls(company)
    report_calls(fake, calls)
    return calls


# ---------------------------------------------------------------- running it directly


@pytest.fixture
async def fake() -> AsyncIterator[FakeUsageApi]:
    async with running_fake_usage() as running:
        yield running


def reader(fake: FakeUsageApi, **options: Any) -> OpenAiUsage:
    values: dict[str, Any] = {
        "base_url": fake.url,
        "admin_key": SecretStr(ADMIN_KEY),
        "timeout_seconds": 5.0,
        "attempts": 3,
        "backoff_seconds": 0.01,
        **options,
    }
    return OpenAiUsage(**values)


async def keep(pool: asyncpg.Pool, calls: Sequence[LlmCallFinished]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await record_calls(conn, calls)


async def run_week(
    pool: asyncpg.Pool,
    usage: OpenAiUsage,
    *,
    now: datetime = NOW,
    days: tuple[date, date] = (WEEK[0], WEEK[-1]),
) -> Run:
    run = await reconcile(
        pool,
        usage,
        ordered(RunOrder(days[0], days[1], "request", requested_by="test")),
        clock=lambda: now,
        tolerance=TOLERANCE,
    )
    assert run is not None
    return run


async def rows_of(pool: asyncpg.Pool, run: Run) -> dict[tuple[date, str], asyncpg.Record]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM reconciliation_results WHERE run_id = $1", run.run_id
        )
    return {(row["day"], row["model"]): row for row in rows}


async def table_counts(pool: asyncpg.Pool) -> dict[str, int]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM llm_calls) AS calls,"
            " (SELECT count(*) FROM reconciliation_results) AS results,"
            " (SELECT count(*) FROM reconciliation_runs) AS runs,"
            " (SELECT count(*) FROM margin_model_days) AS margins"
        )
    assert row is not None
    return dict(row)


async def test_paging_three_pages_for_a_week_and_only_the_projects_usage(
    pool: asyncpg.Pool, company: UUID
) -> None:
    async with running_fake_usage(page_days=3) as fake:
        await keep(pool, ledger_week(fake, company))
        # Another project's usage of the same organization: not ours, not compared.
        fake.add(WEEK[0], "gpt-4o-2024-08-06", Usage(50, 50_000, 0, 9_000), project="proj_other")
        run = await run_week(pool, reader(fake, project_id=PROJECT))
    assert run.succeeded
    assert run.pages == 3
    assert run.summary.counts["matched"] == 8
    assert run.summary.counts["provisional"] == 6
    assert len(fake.requests) == 3
    first, second, third = fake.requests
    assert first.param("start_time") == str(epoch(WEEK[0]))
    assert first.param("end_time") == str(epoch(TODAY + timedelta(days=1)))
    assert (first.param("bucket_width"), first.param("group_by")) == ("1d", "model")
    assert first.query["project_ids"] == [PROJECT]
    assert first.headers["authorization"] == f"Bearer {ADMIN_KEY}"
    assert first.param("page") is None
    assert None not in (second.param("page"), third.param("page"))
    assert second.param("page") != third.param("page")
    assert {second.param("start_time"), third.param("start_time")} == {first.param("start_time")}


async def test_a_429_is_waited_for_as_the_provider_asks_then_the_run_succeeds(
    pool: asyncpg.Pool, fake: FakeUsageApi, company: UUID
) -> None:
    await keep(pool, ledger_week(fake, company))
    fake.enqueue(rate_limited(retry_after="1"))
    started = time.monotonic()
    run = await run_week(pool, reader(fake, backoff_seconds=10.0))
    assert run.succeeded, run.reason
    assert time.monotonic() - started >= 0.9  # Retry-After: 1, not the 10 s backoff
    assert len(fake.requests) == 2
    assert run.summary.counts["matched"] == 8


async def test_a_refused_admin_key_fails_the_run_with_its_reason_and_changes_nothing_else(
    pool: asyncpg.Pool, fake: FakeUsageApi, company: UUID, caplog: pytest.LogCaptureFixture
) -> None:
    await keep(pool, ledger_week(fake, company))
    good = await run_week(pool, reader(fake))
    before = await table_counts(pool)
    wrong = "sk-admin-wrong-9876543210fedcba"
    caplog.set_level("DEBUG")
    with capture_logs() as logs:
        run = await run_week(pool, reader(fake, admin_key=SecretStr(wrong)))
    assert not run.succeeded
    assert run.reason == "the provider refused the admin key (HTTP 401, invalid_api_key)"
    assert len(fake.requests) == 2  # one for each run: a refusal is not retried
    after = await table_counts(pool)
    assert after == {**before, "runs": before["runs"] + 1}
    assert await rows_of(pool, good)  # the good run's rows are all still there
    async with pool.acquire() as conn:
        stored = await conn.fetchrow(
            "SELECT status, reason, pages, matched FROM reconciliation_runs WHERE run_id = $1",
            run.run_id,
        )
    assert dict(stored or {}) == {
        "status": "failed",
        "reason": run.reason,
        "pages": 0,
        "matched": 0,
    }
    [line] = [entry for entry in logs if entry["event"] == "reconciliation run failed"]
    assert line["reason"] == run.reason
    everything = repr(logs) + caplog.text
    assert wrong not in everything
    assert ADMIN_KEY not in everything


@pytest.mark.parametrize(
    ("replies", "options", "reason"),
    [
        (
            [Reply(body={"object": "page", "data": [{"start_time": "yesterday"}]})],
            {},
            "malformed usage page: data.0.start_time: Input should be a valid integer",
        ),
        ([Reply(body=b"<html>gateway</html>")], {}, "malformed usage page: the body is not JSON"),
        (
            [slow(1.0), slow(1.0)],
            {"timeout_seconds": 0.3, "attempts": 2},
            "the provider did not answer within 0.3 s (2 attempts)",
        ),
        (
            [Reply(500, {"error": {"code": None}})] * 3,
            {},
            "the provider failed (HTTP 500) (3 attempts)",
        ),
        (
            [rate_limited(retry_after="3600")],
            {},
            "rate limited by the provider (HTTP 429, rate_limit_exceeded): it asks to wait "
            "3600 s, longer than a run waits (60 s)",
        ),
        ([Reply(403, {"error": {"code": "insufficient_permissions"}})], {}, "HTTP 403"),
    ],
)
async def test_a_provider_that_cannot_be_read_fails_the_run_and_writes_no_row(
    pool: asyncpg.Pool,
    fake: FakeUsageApi,
    company: UUID,
    replies: list[Reply],
    options: dict[str, Any],
    reason: str,
) -> None:
    await keep(pool, ledger_week(fake, company))
    fake.enqueue(*replies)
    run = await run_week(pool, reader(fake, **options))
    assert not run.succeeded
    assert reason in (run.reason or "")
    counts = await table_counts(pool)
    assert (counts["runs"], counts["results"]) == (1, 0)


async def test_an_unreachable_provider_fails_the_run(pool: asyncpg.Pool) -> None:
    async with running_fake_usage() as gone:
        url = gone.url
    run = await run_week(
        pool,
        OpenAiUsage(base_url=url, admin_key=SecretStr(ADMIN_KEY), attempts=2, backoff_seconds=0.01),
    )
    assert run.reason == "the provider is unreachable (ConnectError) (2 attempts)"


async def test_a_page_repeating_a_day_is_malformed(
    pool: asyncpg.Pool, fake: FakeUsageApi, company: UUID
) -> None:
    await keep(pool, ledger_week(fake, company))
    bucket = {"start_time": epoch(WEEK[0]), "end_time": epoch(WEEK[1]), "results": []}
    fake.enqueue(Reply(body={"object": "page", "data": [bucket, bucket], "has_more": False}))
    run = await run_week(pool, reader(fake))
    assert run.reason == f"malformed usage page: the day {WEEK[0]} was already read"


async def test_a_correction_of_the_provider_on_day_n_minus_2_is_picked_up_by_the_next_run(
    pool: asyncpg.Pool, fake: FakeUsageApi, company: UUID
) -> None:
    await keep(pool, ledger_week(fake, company))
    n_minus_2 = TODAY - timedelta(days=2)
    ours = fake_usage_of(fake, n_minus_2, "gpt-4o-2024-08-06")
    fake.correct(n_minus_2, "gpt-4o-2024-08-06", input_tokens=ours.input_tokens + 5_000)

    # Day N: N-2 is provisional; its difference is there, nothing concluded.
    first = await run_week(pool, reader(fake))
    row = (await rows_of(pool, first))[(n_minus_2, "gpt-4o")]
    assert row["status"] == "provisional"
    assert row["their_input_tokens"] - row["our_input_tokens"] == 5_000

    # The next day N-2 is settled and still drifts; then the provider corrects it.
    tomorrow = NOW + timedelta(days=1)
    second = await run_week(pool, reader(fake), now=tomorrow, days=(WEEK[1], TODAY))
    assert (await rows_of(pool, second))[(n_minus_2, "gpt-4o")]["status"] == "drift"
    fake.correct(n_minus_2, "gpt-4o-2024-08-06", input_tokens=ours.input_tokens)
    third = await run_week(pool, reader(fake), now=tomorrow, days=(WEEK[1], TODAY))
    assert (await rows_of(pool, third))[(n_minus_2, "gpt-4o")]["status"] == "matched"
    # The drift that resolved stays in the history, under the run that saw it.
    assert (await rows_of(pool, second))[(n_minus_2, "gpt-4o")]["status"] == "drift"
    assert third.summary.counts["drift"] == 0


def fake_usage_of(fake: FakeUsageApi, day: date, model: str) -> Usage:
    return fake._usage[(PROJECT, day, model)]


async def test_a_range_run_twice_gives_the_same_rows_and_changes_nothing_else(
    pool: asyncpg.Pool, fake: FakeUsageApi, company: UUID
) -> None:
    await keep(pool, ledger_week(fake, company))
    first = await run_week(pool, reader(fake))
    counts = await table_counts(pool)
    second = await run_week(pool, reader(fake))
    again = await table_counts(pool)
    assert again == {
        **counts,
        "runs": counts["runs"] + 1,
        "results": counts["results"] * 2,
    }

    def figures(rows: dict[Any, asyncpg.Record]) -> dict[Any, tuple[Any, ...]]:
        return {key: tuple(row.values())[1:] for key, row in rows.items()}

    assert figures(await rows_of(pool, first)) == figures(await rows_of(pool, second))


async def test_two_runs_at_once_are_one_run(
    pool: asyncpg.Pool, fake: FakeUsageApi, company: UUID
) -> None:
    await keep(pool, ledger_week(fake, company))
    fake.enqueue(slow(0.5))
    order = ordered(RunOrder(WEEK[0], WEEK[-1], "request"))
    both = await asyncio.gather(
        *(
            reconcile(pool, reader(fake), order, clock=lambda: NOW, tolerance=TOLERANCE)
            for _ in range(2)
        )
    )
    assert sorted(run is None for run in both) == [False, True]
    assert (await table_counts(pool))["runs"] == 1
    assert len(fake.requests) == 1


async def test_two_processes_schedules_make_one_daily_run(
    dbs: ServiceDatabases, fake: FakeUsageApi, pool: asyncpg.Pool, company: UUID
) -> None:
    """Two billing processes (two pools, two schedules): the day's run is made once."""
    await keep(pool, ledger_week(fake, company))
    fake.enqueue(slow(0.5))
    now = [NOW]
    pools = [await db.create_pool(dbs.billing, min_size=1, max_size=2) for _ in range(2)]
    try:
        schedules = [
            Reconciler(p, reader(fake), tolerance=TOLERANCE, clock=lambda: now[0]) for p in pools
        ]
        ran = await asyncio.gather(*(s.run_daily() for s in schedules))
        assert sorted(run is None for run in ran) == [False, True]
        [run] = [run for run in ran if run is not None]
        assert (run.trigger, run.first_day, run.last_day) == ("schedule", WEEK[0], TODAY)
        # Later the same day: done, in either process.
        now[0] = NOW + timedelta(hours=6)
        assert [await s.run_daily() for s in schedules] == [None, None]
        # The next day: one run again, of the last week.
        now[0] = NOW + timedelta(days=1)
        ran = await asyncio.gather(*(s.run_daily() for s in schedules))
        [run] = [run for run in ran if run is not None]
        assert (run.first_day, run.last_day) == (WEEK[1], TODAY + timedelta(days=1))
        assert (await table_counts(pool))["runs"] == 2
    finally:
        for p in pools:
            await p.close()


async def test_a_failed_daily_run_is_tried_again_after_the_retry_wait(
    pool: asyncpg.Pool, fake: FakeUsageApi, company: UUID
) -> None:
    await keep(pool, ledger_week(fake, company))
    now = [NOW]
    schedule = Reconciler(
        pool, reader(fake), tolerance=TOLERANCE, retry_seconds=3600, clock=lambda: now[0]
    )
    fake.enqueue(Reply(503, {"error": {"code": None}}), *[Reply(503, {})] * 2)
    failed = await schedule.run_daily()
    assert failed is not None
    assert not failed.succeeded
    now[0] = NOW + timedelta(minutes=30)
    assert await schedule.run_daily() is None  # too soon
    now[0] = NOW + timedelta(hours=1)
    again = await schedule.run_daily()
    assert again is not None
    assert again.succeeded


# ---------------------------------------------------------------- over HTTP, through the broker


@asynccontextmanager
async def reconciling(
    dbs: ServiceDatabases, prefix: str, fake: FakeUsageApi, **overrides: Any
) -> AsyncIterator[Stack]:
    settings: dict[str, Any] = {
        "openai_admin_key": ADMIN_KEY,
        "openai_admin_base_url": fake.url,
        "reconciliation_daily": False,
        "reconciliation_backoff_seconds": 0.01,
        **overrides,
    }
    async with start_billing(dbs, prefix, **settings) as stack:
        stack.apps["billing"].state.clock = lambda: NOW
        yield stack


async def run_now(stack: Stack, **params: str) -> httpx.Response:
    return await stack.billing.post(RUN, params=params or THE_WEEK, headers=OPERATOR)


def by_day_model(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["date"], row["model"]): row for row in body["days"]}


async def test_a_week_that_matches_is_matched_the_last_three_days_provisional(
    dbs: ServiceDatabases, prefix: str, fake: FakeUsageApi, company: UUID
) -> None:
    async with reconciling(dbs, prefix, fake) as stack:
        await record(stack, *ledger_week(fake, company))
        response = await run_now(stack)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["enabled"] is True
        [run] = body["runs"]
        assert (run["status"], run["reason"]) == ("succeeded", None)
        assert (run["from"], run["to"], run["trigger"]) == ("2026-03-04", "2026-03-10", "request")
        rows = by_day_model(body)
        assert len(rows) == 14
        for (day, model), row in rows.items():
            expected = "matched" if settled(date.fromisoformat(day)) else "provisional"
            assert row["status"] == expected, (day, model)
            assert row["ours"] == row["theirs"]
            assert row["difference"] == {
                "requests": 0,
                "inputTokens": 0,
                "cachedInputTokens": 0,
                "outputTokens": 0,
            }
            assert set(row["differencePercent"].values()) == {"0.00"}
            assert row["runId"] == run["runId"]
        # Of each day and model: the billed call and the two others that cost tokens.
        assert rows[("2026-03-04", "gpt-4o")]["ours"] == {
            "requests": 3,
            "inputTokens": 1_000 + 900 + 100,
            "cachedInputTokens": 200,
            "outputTokens": 300 + 200,
        }
        listed = await stack.billing.get(LIST, params=THE_WEEK, headers=OPERATOR)
        assert listed.status_code == 200
        assert listed.json()["days"] == body["days"]
        assert [r["runId"] for r in listed.json()["runs"]] == [run["runId"]]


async def test_twelve_percent_more_input_tokens_one_day_is_drift_with_the_difference(
    dbs: ServiceDatabases, prefix: str, fake: FakeUsageApi, company: UUID
) -> None:
    async with reconciling(dbs, prefix, fake) as stack:
        await record(stack, *ledger_week(fake, company))
        day, model = WEEK[0], "gpt-4o-mini-2024-07-18"
        ours = fake_usage_of(fake, day, model).input_tokens
        assert ours == 2_000  # 12% of it is a whole number of tokens
        fake.correct(day, model, input_tokens=ours * 112 // 100)
        response = await run_now(stack)
        assert response.status_code == 200, response.text
        rows = by_day_model(response.json())
        drifted = rows.pop((day.isoformat(), "gpt-4o-mini"))
        assert drifted["status"] == "drift"
        assert drifted["difference"]["inputTokens"] == ours * 112 // 100 - ours
        assert drifted["ours"]["inputTokens"] == ours
        assert drifted["differencePercent"]["inputTokens"] == "12.00"
        assert drifted["differencePercent"]["requests"] == "0.00"
        assert {row["status"] for row in rows.values()} == {"matched", "provisional"}

        metrics = (await stack.billing.get("/metrics")).text
        assert 'billing_reconciliation_day_models{status="drift"} 1.0' in metrics
        assert "billing_reconciliation_max_drift_percent 12.0" in metrics
        assert 'billing_reconciliation_runs_total{status="succeeded",trigger="request"}' in metrics


async def test_usage_we_never_called_and_calls_the_provider_does_not_report(
    dbs: ServiceDatabases, prefix: str, fake: FakeUsageApi, company: UUID
) -> None:
    async with reconciling(dbs, prefix, fake) as stack:
        calls = ledger_week(fake, company)
        # We called gpt-4.1-mini on 03-05; the provider reports none of it.
        unreported = llm_call(company, model="gpt-4.1-mini", at=NOW - timedelta(days=5))
        # The provider reports gpt-4.1-nano on 03-06, which we never called.
        fake.report(
            WEEK[2], "gpt-4.1-nano-2025-04-14", requests=4, input_tokens=800, output_tokens=120
        )
        await record(stack, *calls, unreported)
        body = (await run_now(stack)).json()
        rows = by_day_model(body)
        theirs_only = rows[(WEEK[2].isoformat(), "gpt-4.1-nano")]
        assert theirs_only["status"] == "missing-ours"
        assert theirs_only["ours"] == dict.fromkeys(theirs_only["ours"], 0)
        assert theirs_only["theirs"]["requests"] == 4
        assert theirs_only["differencePercent"]["inputTokens"] is None
        ours_only = rows[("2026-03-05", "gpt-4.1-mini")]
        assert ours_only["status"] == "missing-theirs"
        assert ours_only["difference"]["requests"] == -1
        assert ours_only["differencePercent"]["requests"] == "-100.00"
        statuses = [row["status"] for key, row in rows.items() if "gpt-4o" in key[1]]
        assert set(statuses) == {"matched", "provisional"}


async def test_the_list_shows_each_days_latest_run_and_runs_keep_the_history(
    dbs: ServiceDatabases, prefix: str, fake: FakeUsageApi, company: UUID
) -> None:
    async with reconciling(dbs, prefix, fake) as stack:
        await record(stack, *ledger_week(fake, company))
        day = WEEK[0]
        ours = fake_usage_of(fake, day, "gpt-4o-2024-08-06")
        fake.correct(day, "gpt-4o-2024-08-06", requests=ours.requests + 2)
        drifted = (await run_now(stack)).json()
        fake.correct(day, "gpt-4o-2024-08-06", requests=ours.requests)
        # A second run of that day alone: the list takes it for that day only.
        matched = (await run_now(stack, **{"from": day.isoformat(), "to": day.isoformat()})).json()
        listed = (await stack.billing.get(LIST, params=THE_WEEK, headers=OPERATOR)).json()
        rows = by_day_model(listed)
        assert rows[(day.isoformat(), "gpt-4o")]["status"] == "matched"
        assert rows[(day.isoformat(), "gpt-4o")]["runId"] == matched["runs"][0]["runId"]
        assert rows[(WEEK[1].isoformat(), "gpt-4o")]["runId"] == drifted["runs"][0]["runId"]
        assert [r["runId"] for r in listed["runs"]] == [
            matched["runs"][0]["runId"],
            drifted["runs"][0]["runId"],
        ]
        history = await stack.billing.get(
            LIST, params={"runId": drifted["runs"][0]["runId"]}, headers=OPERATOR
        )
        assert by_day_model(history.json())[(day.isoformat(), "gpt-4o")]["status"] == "drift"
        unknown = {"runId": str(uuid.uuid4())}
        missing = await stack.billing.get(LIST, params=unknown, headers=OPERATOR)
        assert missing.status_code == 404


async def test_a_refused_run_over_http_is_listed_failed_with_its_reason(
    dbs: ServiceDatabases, prefix: str, fake: FakeUsageApi, company: UUID
) -> None:
    async with reconciling(dbs, prefix, fake, openai_admin_key="sk-admin-revoked") as stack:
        await record(stack, *ledger_week(fake, company))
        response = await run_now(stack)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["days"] == []
        [run] = body["runs"]
        assert (run["status"], run["reason"]) == (
            "failed",
            "the provider refused the admin key (HTTP 401, invalid_api_key)",
        )
        listed = (await stack.billing.get(LIST, params=THE_WEEK, headers=OPERATOR)).json()
        assert (listed["days"], listed["runs"]) == ([], body["runs"])


async def test_a_long_run_answers_202_and_is_listed_once_finished(
    dbs: ServiceDatabases, prefix: str, fake: FakeUsageApi, company: UUID
) -> None:
    async with reconciling(dbs, prefix, fake, reconciliation_answer_within_seconds=0.1) as stack:
        await record(stack, *ledger_week(fake, company))
        fake.enqueue(slow(1.5))
        response = await run_now(stack)
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert (accepted["from"], accepted["to"]) == ("2026-03-04", "2026-03-10")
        assert response.headers["location"] == f"{LIST}?runId={accepted['runId']}"
        # Meanwhile the lock is held: another run is refused, not queued.
        busy = await run_now(stack)
        assert busy.status_code == 409
        assert busy.json()["type"] == "urn:problem-type:reconciliation-in-progress"

        async def listed() -> dict[str, Any]:
            found = await stack.billing.get(response.headers["location"], headers=OPERATOR)
            assert found.status_code in (200, 404)
            return found.json() if found.status_code == 200 else {"runs": []}

        body = await eventually(listed, until=lambda found: bool(found["runs"]), timeout=20)
        assert body["runs"][0]["status"] == "succeeded"
        assert len(body["days"]) == 14


async def test_the_routes_need_platform_admin_and_a_range_they_can_read(
    dbs: ServiceDatabases, prefix: str, fake: FakeUsageApi
) -> None:
    async with reconciling(dbs, prefix, fake) as stack:
        company = bearer(uuid.uuid4(), roles=["billing:admin"])
        assert (await stack.billing.post(RUN, headers=company)).status_code == 403
        assert (await stack.billing.get(LIST, headers=company)).status_code == 403
        assert (await stack.billing.post(RUN)).status_code == 401
        future = await run_now(stack, **{"from": "2026-03-10", "to": "2026-03-11"})
        assert future.status_code == 422
        assert future.json()["errors"][0]["field"] == "to"
        backwards = await run_now(stack, **{"from": "2026-03-10", "to": "2026-03-01"})
        assert backwards.status_code == 422
        assert backwards.json()["errors"][0]["field"] == "from"
        assert (await run_now(stack, **{"from": "2026-3-1"})).status_code == 422
        assert fake.requests == []
        # No range: the last week.
        default = await stack.billing.post(RUN, headers=OPERATOR)
        assert default.status_code == 200
        assert (default.json()["runs"][0]["from"], default.json()["runs"][0]["to"]) == (
            "2026-03-04",
            "2026-03-10",
        )


async def test_without_an_admin_key_reconciliation_is_off_and_says_so(
    dbs: ServiceDatabases, prefix: str
) -> None:
    async with start_billing(dbs, prefix) as stack:
        response = await stack.billing.post(RUN, headers=OPERATOR)
        assert response.status_code == 409
        assert response.json()["type"] == "urn:problem-type:reconciliation-off"
        assert "OPENAI_ADMIN_KEY" in response.json()["detail"]
        listed = (await stack.billing.get(LIST, headers=OPERATOR)).json()
        assert listed == {"enabled": False, "days": [], "runs": []}
        assert "billing_reconciliation_enabled 0.0" in (await stack.billing.get("/metrics")).text
