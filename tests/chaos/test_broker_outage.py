"""RabbitMQ unreachable from the publishing services while they serve requests.

Every request still answers 2xx (the event waits in the outbox, written in the
same transaction), and every event reaches billing once RabbitMQ is back: one
usage row per generation, one known job per job, drafts moved onto their jobs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import httpx
import pytest

from services.jobs.main import create_app as create_jobs
from services.question_gen.main import create_app as create_questions
from tests.chaos.harness import Figures, ledger, queue_counts
from tests.support.auth import bearer
from tests.support.databases import ServiceDatabases
from tests.support.env import RABBITMQ_URL
from tests.support.proxy import TcpProxy
from tests.support.stack import Stack, jobs_settings, question_settings, running, start_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.chaos

DESCRIPTION = "Site reliability engineer: queues, databases and outages."
DRAFT_ROWS = "SELECT count(*) AS n FROM question_generation_usage WHERE draft_job_id IS NOT NULL"


async def outbox_size(stack: Stack, database: str) -> int:
    rows = await stack.fetch(database, "SELECT count(*) AS n FROM outbox")
    count: int = rows[0]["n"]
    return count


async def serve_burst(stack: Stack, company: UUID, drafts: int) -> tuple[list[UUID], list[UUID]]:
    """Per draft: two generations, then the job saved from it. Returns event and job ids."""
    questions, jobs = stack.questions, stack.jobs

    async def one_draft(index: int) -> tuple[list[UUID], UUID]:
        draft = str(uuid.uuid4())
        generated = []
        for number in (3, 7):
            response = await questions.post(
                "/api/ai/generate-questions",
                json={"jobDescription": DESCRIPTION, "numberOfQuestions": number, "jobId": draft},
                headers={**bearer(company), "Idempotency-Key": f"{draft}-{number}"},
            )
            assert response.status_code == 200, response.text
            generated.append(UUID(response.json()["generationId"]))
        response = await jobs.post(
            "/api/jobs",
            json={"title": f"Engineer {index}", "draftJobId": draft},
            headers=bearer(company),
        )
        assert response.status_code == 201, response.text
        return generated, UUID(response.json()["id"])

    results = await asyncio.gather(*(one_draft(index) for index in range(drafts)))
    return [event for generated, _ in results for event in generated], [job for _, job in results]


async def wait_delivered(stack: Stack, events: list[UUID], jobs: list[UUID]) -> None:
    async def billed() -> tuple[int, int, int]:
        usage = await ledger(stack.dbs.billing, events)
        known = await ledger(stack.dbs.billing, jobs, table="known_jobs", column="job_id")
        calls = await ledger(stack.dbs.billing, events, table="llm_calls", column="generation_id")
        return usage.lost, known.lost, calls.lost

    # The relay backs off up to 10 s between attempts while the broker is away.
    await eventually(billed, until=lambda lost: lost == (0, 0, 0), timeout=60, interval=0.2)


async def outage(
    stack: Stack, proxy: TcpProxy, company: UUID, drafts: int
) -> tuple[list[UUID], list[UUID], int]:
    """Serve a burst while the proxy is cut; returns its events, jobs and the outbox backlog."""
    assert proxy.is_cut
    events, jobs = await serve_burst(stack, company, drafts)
    await asyncio.sleep(1.0)  # time for a relay to (fail to) publish
    backlog = await outbox_size(stack, stack.dbs.question_gen) + await outbox_size(
        stack, stack.dbs.jobs
    )
    # Each generation waits with its LLM call (the cost of goods), each job with its event.
    assert backlog == 2 * len(events) + len(jobs)
    assert (await ledger(stack.dbs.billing, events)).lost == len(events)  # none billed yet
    return events, jobs, backlog


async def readiness(client: httpx.AsyncClient) -> dict[str, object]:
    body: dict[str, object] = (await client.get("/readyz")).json()
    return body


@asynccontextmanager
async def publishers_behind(
    proxy: TcpProxy, dbs: ServiceDatabases, prefix: str
) -> AsyncIterator[Stack]:
    """Billing straight to RabbitMQ; the question and jobs services through the proxy.

    Not waiting for `/readyz`: with the proxy cut they are not ready, and serve all the same.
    """
    through_proxy = proxy.url(RABBITMQ_URL)
    async with start_stack(dbs, prefix, services=("billing",)) as stack:
        questions = create_questions(question_settings(dbs, prefix, rabbitmq_url=through_proxy))
        jobs = create_jobs(jobs_settings(dbs, prefix, rabbitmq_url=through_proxy))
        async with (
            running(questions, "http://questions", wait_ready=False) as questions_client,
            running(jobs, "http://jobs", wait_ready=False) as jobs_client,
        ):
            stack.apps.update(question_gen=questions, jobs=jobs)
            stack.clients.update(question_gen=questions_client, jobs=jobs_client)
            yield stack


async def test_requests_succeed_while_broker_is_away_and_events_follow(
    dbs: ServiceDatabases, prefix: str, company: UUID, broker_proxy: TcpProxy, figures: Figures
) -> None:
    proxy = broker_proxy
    proxy.cut()  # away from the start: the services start all the same
    async with publishers_behind(proxy, dbs, prefix) as stack:
        assert (await readiness(stack.questions))["checks"] == {
            "database": True,
            "broker": False,
        }
        first_events, first_jobs, first_backlog = await outage(stack, proxy, company, 10)
        proxy.restore()
        await wait_delivered(stack, first_events, first_jobs)

        # Away again after the services had connected: the robust connection comes back.
        proxy.cut()
        await eventually(
            lambda: readiness(stack.questions),
            until=lambda body: body["status"] == "not ready",
        )
        second_events, second_jobs, second_backlog = await outage(stack, proxy, company, 10)
        await asyncio.sleep(2.0)
        proxy.restore()
        await wait_delivered(stack, first_events + second_events, first_jobs + second_jobs)

        events, jobs = first_events + second_events, first_jobs + second_jobs
        await asyncio.sleep(1.0)  # a late duplicate would show now
        usage = await ledger(dbs.billing, events)
        known = await ledger(dbs.billing, jobs, table="known_jobs", column="job_id")
        drafts_left = await stack.fetch(dbs.billing, DRAFT_ROWS)
        outbox_left = await outbox_size(stack, dbs.question_gen) + await outbox_size(
            stack, dbs.jobs
        )

    dlq, _ = await queue_counts(stack.topology.billing_dlq_name)
    figures.ledger(usage)
    figures.ledger(known, prefix="jobs_")
    figures.record(
        requests=len(events) + len(jobs),
        outbox_backlog=[first_backlog, second_backlog],
        drafts_left=drafts_left[0]["n"],
        outbox_left=outbox_left,
        dlq=dlq,
    )
    assert usage.exact, usage
    assert known.exact, known
    assert drafts_left[0]["n"] == 0
    assert outbox_left == 0
    assert dlq == 0
