"""Metrics that move, log lines that carry the request's correlation id, documents served.

The stack runs in one process here, so the three services share one Prometheus
registry; each metric is still read from the `/metrics` of the service that owns it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.events import JobCreated, LlmCallFinished, QuestionsGenerated
from contracts.topology import Topology
from services import openapi
from services.billing.config import Settings as BillingSettings
from services.jobs.config import Settings as JobsSettings
from services.question_gen.config import Settings as QuestionSettings
from services.question_gen.main import create_app as create_questions
from tests.support.auth import bearer
from tests.support.broker import publish_raw, queue_depth
from tests.support.databases import ServiceDatabases
from tests.support.stack import Stack, question_settings, running, start_stack
from tests.support.waiting import eventually

DESCRIPTION = "Site reliability engineer: Prometheus, structured logs, RabbitMQ."

Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


CALL_KEY = LlmCallFinished.routing_key


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in after, f"{name}{labels} is not exposed"
    return after[key] - before.get(key, 0.0)


async def generate(stack: Stack, company: UUID, draft: str, correlation_id: str) -> dict[str, Any]:
    response = await stack.questions.post(
        "/api/ai/generate-questions",
        json={"jobDescription": DESCRIPTION, "numberOfQuestions": 10, "draftJobId": draft},
        headers={**bearer(company), "X-Correlation-ID": correlation_id},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-correlation-id"] == correlation_id
    body: dict[str, Any] = response.json()
    return body


async def save_job(stack: Stack, company: UUID, draft: str, correlation_id: str) -> str:
    response = await stack.jobs.post(
        "/api/jobs",
        json={"title": "SRE", "description": DESCRIPTION, "draftJobId": draft},
        headers={**bearer(company), "X-Correlation-ID": correlation_id},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def reconciled(stack: Stack, company: UUID) -> bool:
    rows = await stack.usage(company)
    return len(rows) == 1 and rows[0]["job_id"] is not None


async def test_metrics_move_when_events_are_processed(stack: Stack, company: UUID) -> None:
    before = {
        "questions": await scrape(stack.questions),
        "jobs": await scrape(stack.jobs),
        "billing": await scrape(stack.billing),
    }
    draft = str(uuid.uuid4())

    generation = await generate(stack, company, draft, uuid.uuid4().hex)
    await eventually(lambda: stack.usage(company))
    await save_job(stack, company, draft, uuid.uuid4().hex)
    await eventually(lambda: reconciled(stack, company))

    # The generation's LLM call is an event of its own (the cost of goods), kept too.
    def call_kept(now: Samples) -> bool:
        key = ("billing_events_consumed_total", frozenset({("routing_key", CALL_KEY)}))
        return now.get(key, 0.0) - before["billing"].get(key, 0.0) == 1

    await eventually(lambda: scrape(stack.billing), until=call_kept)
    await publish_raw(stack.topology, b"{not json", routing_key=QuestionsGenerated.routing_key)
    await eventually(lambda: queue_depth(stack.topology.billing_dlq_name), until=lambda n: n == 1)
    listed = await stack.billing.get("/api/billing/usage", headers=bearer(company))
    assert listed.status_code == 200

    exposed = await scrape(stack.questions)
    questions = partial(moved, before["questions"], exposed)
    usage = generation["usage"]
    assert questions("llm_calls_total", model="offline", outcome="ok") == 1
    assert questions("llm_call_duration_seconds_count", model="offline") == 1
    assert questions("llm_tokens_total", model="offline", kind="prompt") == usage["promptTokens"]
    assert (
        questions("llm_tokens_total", model="offline", kind="completion")
        == usage["completionTokens"]
    )
    generate_route = {"method": "POST", "route": "/api/ai/generate-questions", "status": "200"}
    assert questions("http_requests_total", **generate_route) == 1
    assert questions("http_request_duration_seconds_count", **generate_route) == 1
    assert questions("events_published_total", routing_key=QuestionsGenerated.routing_key) == 1
    assert questions("events_published_total", routing_key=CALL_KEY) == 1
    # Gauges, set by the relay's sweeps (test_outbox_backlog_is_visible... moves them).
    assert ("outbox_backlog", frozenset()) in exposed
    assert ("outbox_oldest_age_seconds", frozenset()) in exposed

    jobs = partial(moved, before["jobs"], await scrape(stack.jobs))
    assert jobs("events_published_total", routing_key=JobCreated.routing_key) == 1
    assert jobs("http_requests_total", method="POST", route="/api/jobs", status="201") == 1

    after = await scrape(stack.billing)
    billing = partial(moved, before["billing"], after)
    assert billing("billing_usage_rows_written_total", status="draft") == 1
    assert billing("billing_drafts_reconciled_total") == 1
    assert round(Decimal(billing("billing_amount_billed_total")), 4) == Decimal("0.1000")
    for routing_key in (QuestionsGenerated.routing_key, JobCreated.routing_key, CALL_KEY):
        assert billing("billing_events_consumed_total", routing_key=routing_key) == 1
    assert billing("billing_events_dead_lettered_total", reason="poison") == 1
    assert billing("http_requests_total", method="GET", route="/api/billing/usage", status="200")
    # Every message billing took (usage, call, job, poison), from receipt to acknowledgement.
    assert billing("billing_message_seconds_count") == 4
    # FastStream's own middleware counts what billing published to its dead-letter
    # exchange: the dead letter (billing's own events go to the events exchange).
    dlx = stack.topology.billing_dlx_name
    published = {
        labels: value
        for (sample, labels), value in after.items()
        if sample == "faststream_published_messages_total"
        and dict(labels).get("app_name") == "billing"
        and dict(labels).get("destination", "").startswith(dlx)
    }
    before_published = {
        labels: value
        for (sample, labels), value in before["billing"].items()
        if sample == "faststream_published_messages_total"
        and dict(labels).get("app_name") == "billing"
        and dict(labels).get("destination", "").startswith(dlx)
    }
    assert sum(published.values()) - sum(before_published.values()) == 1, published


async def test_outbox_backlog_is_visible_while_the_broker_is_unreachable(
    dbs: ServiceDatabases, prefix: str, company: UUID
) -> None:
    # Nothing listens on port 1: the answer is still 200, and the event waits in the outbox.
    settings = question_settings(dbs, prefix, rabbitmq_url="amqp://guest:guest@127.0.0.1:1/")
    async with running(create_questions(settings), "http://questions", wait_ready=False) as client:
        before = await scrape(client)
        stack = Stack(dbs=dbs, topology=Topology(prefix), clients={"question_gen": client})

        await generate(stack, company, str(uuid.uuid4()), uuid.uuid4().hex)

        async def backlog() -> Samples:
            return await scrape(client)

        # The generation and its LLM call (the cost of goods) wait together.
        after = await eventually(
            backlog, until=lambda samples: samples[("outbox_backlog", frozenset())] == 2
        )
        assert after[("outbox_oldest_age_seconds", frozenset())] > 0
        failed = moved(
            before, after, "events_publish_failed_total", routing_key=QuestionsGenerated.routing_key
        )
        assert failed >= 1


async def test_reconciliation_log_carries_the_correlation_id_of_the_http_request(
    dbs: ServiceDatabases, prefix: str, company: UUID, capfd: pytest.CaptureFixture[str]
) -> None:
    """Billing's JSON lines, as production writes them, name the request that caused them."""
    json_logs = {"log_format": "json", "log_level": "DEBUG"}
    async with start_stack(
        dbs,
        prefix,
        question_overrides=json_logs,
        jobs_overrides=json_logs,
        billing_overrides=json_logs,
    ) as stack:
        draft = str(uuid.uuid4())
        generation_request, job_request = f"gen-{uuid.uuid4().hex}", f"job-{uuid.uuid4().hex}"

        await generate(stack, company, draft, generation_request)
        await eventually(lambda: stack.usage(company))
        job_id = await save_job(stack, company, draft, job_request)
        await eventually(lambda: reconciled(stack, company))

    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line[:1] == "{"]
    found = [
        line
        for line in lines
        if line.get("event") == "job created: draft usage reconciled"
        and line.get("company_id") == str(company)
    ]
    assert len(found) == 1, found  # one JobCreated, published and processed once
    [reconciliation] = found
    assert reconciliation["correlation_id"] == job_request
    assert reconciliation["service"] == "billing"
    assert reconciliation["level"] == "info"
    assert reconciliation["job_id"] == job_id
    assert reconciliation["draft_job_id"] == draft
    assert reconciliation["reconciled_rows"] == 1
    assert reconciliation["questions"] == 10
    assert reconciliation["cost"] == "0.1000"
    assert "timestamp" in reconciliation

    [recorded] = [
        line
        for line in lines
        if line.get("event") == "usage recorded" and line.get("company_id") == str(company)
    ]
    assert recorded["correlation_id"] == generation_request
    assert recorded["level"] == "debug"
    assert (recorded["status"], recorded["draft_job_id"]) == ("draft", draft)
    assert (recorded["questions"], recorded["cost"]) == (10, "0.1000")


async def test_each_service_serves_its_openapi_document(stack: Stack) -> None:
    clients = {"question_gen": stack.questions, "jobs": stack.jobs, "billing": stack.billing}
    for service, client in clients.items():
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        document = response.json()
        assert document["openapi"].startswith("3.")
        assert "/healthz" in document["paths"]
        assert "/readyz" in document["paths"]
        assert (await client.get("/healthz")).json() == {"status": "ok"}, service
        assert (await client.get("/readyz")).status_code == 200, service
    billing_paths = (await stack.billing.get("/openapi.json")).json()["paths"]
    assert {"/api/billing/usage", "/api/billing/usage/{usage_id}", "/api/billing/summary"} <= set(
        billing_paths
    )


def test_written_openapi_documents_are_fresh() -> None:
    """`make docs` writes them; a route or model changed without it fails here."""
    for name, text in openapi.documents().items():
        written = openapi.OUTPUT_DIR / name
        assert written.exists(), f"docs/openapi/{name} missing: run `make docs`"
        assert written.read_text() == text, f"docs/openapi/{name} is stale: run `make docs`"


def test_operations_guide_names_every_setting() -> None:
    """docs/operations.md documents every environment variable a service reads."""
    guide = (openapi.OUTPUT_DIR.parent / "operations.md").read_text()
    for settings in (QuestionSettings, JobsSettings, BillingSettings):
        for name, field in settings.model_fields.items():
            alias = field.validation_alias
            variable = alias if isinstance(alias, str) else name.upper()
            assert f"`{variable}`" in guide, f"{variable} ({settings.__module__}) not documented"
