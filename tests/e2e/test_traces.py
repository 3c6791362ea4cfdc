"""One generation is one trace across the services, as an OTLP collector receives it.

The three services run as in every end-to-end test, with the real `openai` SDK
against the fake LLM, and export over OTLP/HTTP to a receiver this test starts
(`tests.support.otlp`), configured by nothing but OpenTelemetry's own variables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from uuid import UUID

import pytest

from contracts.events import JobCreated
from tests.support.auth import bearer
from tests.support.databases import ServiceDatabases
from tests.support.fake_llm import FakeLlm, questions, running_fake_llm
from tests.support.otlp import ReceivedSpan, Receiver, running_receiver
from tests.support.stack import start_stack
from tests.support.waiting import eventually

DESCRIPTION = "Staff engineer: distributed tracing across Python services."
MODEL = "gpt-4o"
GENERATE = "/api/ai/generate-questions"
# A client's own trace, which the question service must continue.
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with running_receiver() as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # ms: spans arrive quickly
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
        yield running


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with running_fake_llm(questions(3, model="gpt-4o-2024-08-06")) as server:
        yield server


def one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [span for span in spans if span.service == service and span.name == name]
    assert len(found) == 1, f"{service} {name}: {found}"
    return found[0]


def by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.span_id: span for span in spans}


async def test_a_generation_then_its_job_are_traced_across_the_services(
    dbs: ServiceDatabases, prefix: str, receiver: Receiver, fake: FakeLlm, company: UUID
) -> None:
    draft = str(uuid.uuid4())
    llm = {
        "openai_api_key": "test-key",
        "openai_base_url": fake.url,
        "openai_model": MODEL,
        "llm_timeout_seconds": 10.0,
    }
    async with start_stack(dbs, prefix, question_overrides=llm) as stack:
        generated = await stack.questions.post(
            GENERATE,
            json={"jobDescription": DESCRIPTION, "numberOfQuestions": 3, "draftJobId": draft},
            headers={**bearer(company), "traceparent": CLIENT_PARENT},
        )
        assert generated.status_code == 200, generated.text
        generation_id = generated.json()["generationId"]
        await eventually(lambda: stack.usage(company), until=lambda rows: len(rows) == 1)
        saved = await stack.jobs.post(
            "/api/jobs",
            json={"title": "Staff engineer", "description": DESCRIPTION, "draftJobId": draft},
            headers=bearer(company),
        )
        assert saved.status_code == 201, saved.text
        await eventually(
            lambda: stack.usage(company), until=lambda rows: rows[0]["job_id"] is not None
        )

        def complete(spans: list[ReceivedSpan]) -> bool:
            """Every event published (the generation, its LLM call, the job) is linked from
            a batch billing committed."""
            published = {
                (s.trace_id, s.span_id)
                for s in spans
                if s.kind == "producer" and s.service in ("question_gen", "jobs")
            }
            linked = {link for s in spans if s.service == "billing" for link in s.links}
            return (
                len([s for s in spans if s.service in ("question_gen", "jobs")]) >= 6
                and published <= linked
            )

        spans = await receiver.wait_for(complete)

    trace = [span for span in spans if span.trace_id == CLIENT_TRACE]
    request = one(trace, "question_gen", f"POST {GENERATE}")
    assert request.kind == "server"
    assert request.parent_span_id == "00f067aa0ba902b7"  # the client's span, continued
    assert request.attributes["http.route"] == GENERATE
    # The instrumentation's names: the stable ones with OTEL_SEMCONV_STABILITY_OPT_IN=http.
    attributes = request.attributes
    assert attributes.get("http.response.status_code", attributes.get("http.status_code")) == 200

    llm_call = one(trace, "question_gen", f"chat {MODEL}")
    assert llm_call.kind == "client"
    assert llm_call.parent_span_id == request.span_id
    assert llm_call.attributes["gen_ai.operation.name"] == "chat"
    assert llm_call.attributes["gen_ai.provider.name"] == "openai"
    assert llm_call.attributes["gen_ai.request.model"] == MODEL
    assert llm_call.attributes["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert llm_call.attributes["gen_ai.usage.input_tokens"] == 321
    assert llm_call.attributes["gen_ai.usage.output_tokens"] == 123

    # The generation's events (itself and its LLM call): written with the request's context,
    # published by the relay as children of the request, each linked from the batch billing
    # committed it in (and that batch the child of its publish when it held only that one).
    publishes = [s for s in trace if s.service == "question_gen" and s.kind == "producer"]
    assert {s.attributes["messaging.rabbitmq.destination.routing_key"] for s in publishes} == {
        "questions.generated.v1",
        "questions.llm_call.v1",
    }
    assert generation_id in {s.attributes["messaging.message.id"] for s in publishes}
    assert {s.parent_span_id for s in publishes} == {request.span_id}
    assert all(s.attributes["messaging.system"] == "rabbitmq" for s in publishes)
    batches = [s for s in spans if s.service == "billing" and s.kind == "consumer"]
    for publish in publishes:
        (batch,) = [s for s in batches if (publish.trace_id, publish.span_id) in s.links]
        assert batch.name.startswith("process ")
        if len(batch.links) == 1:
            assert batch.parent_span_id == publish.span_id
            assert batch.trace_id == CLIENT_TRACE
        else:
            assert batch.parent_span_id is None  # a trace of its own, linking each
        assert batch.attributes["messaging.batch.message_count"] == len(batch.links)

    # The job: a trace of its own, from the jobs service's request to billing's batch.
    (job_publish,) = [s for s in spans if s.service == "jobs" and s.kind == "producer"]
    assert job_publish.attributes["messaging.rabbitmq.destination.routing_key"] == (
        JobCreated.routing_key
    )
    job_request = by_id(spans)[job_publish.parent_span_id or ""]
    assert (job_request.service, job_request.name) == ("jobs", "POST /api/jobs")
    assert job_request.trace_id != CLIENT_TRACE
    assert any((job_publish.trace_id, job_publish.span_id) in s.links for s in batches)
    # Probes are not traced.
    assert not [s for s in spans if "readyz" in s.name or "metrics" in s.name]
    print_trace(trace)


def print_trace(trace: list[ReceivedSpan]) -> None:
    """The trace as received, indented by parent (shown with `pytest -s`)."""
    children: dict[str | None, list[ReceivedSpan]] = {}
    ids = {span.span_id for span in trace}
    for span in sorted(trace, key=lambda s: s.start_ns):
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)

    def show(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            print(f"{'  ' * depth}{span.service}: {span.name} [{span.kind}] {span.span_id}")
            show(span.span_id, depth + 1)

    print(f"trace {trace[0].trace_id}")
    show(None, 1)
    for span in trace:
        for trace_id, span_id in span.links:
            print(f"  link: {span.service} {span.name} {span.span_id} -> {trace_id} {span_id}")
