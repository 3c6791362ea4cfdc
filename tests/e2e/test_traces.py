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
            generation_trace = [span for span in spans if span.trace_id == CLIENT_TRACE]
            processed = [
                span
                for span in generation_trace
                if span.service == "billing" and span.name.startswith("process ")
            ]
            jobs = [
                span
                for span in spans
                if span.service == "billing"
                and span.attributes.get("messaging.rabbitmq.destination.routing_key")
                == JobCreated.routing_key
            ]
            batches = [span for span in spans if span.name == "record batch"]
            linked = {link for span in batches for link in span.links}
            # Every message of the generation (the generation and its LLM call) and the job.
            return (
                len(processed) >= 2
                and bool(jobs)
                and {(span.trace_id, span.span_id) for span in [*processed, *jobs]} <= linked
            )

        spans = await receiver.wait_for(complete)

    trace = [span for span in spans if span.trace_id == CLIENT_TRACE]
    spans_by_id = by_id(trace)
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

    # The generation's event: written with the request's context, published by the relay
    # under it, recorded by billing under the publish.
    publishes = [s for s in trace if s.service == "question_gen" and s.kind == "producer"]
    generation_publish = next(
        s for s in publishes if s.attributes["messaging.message.id"] == generation_id
    )
    assert generation_publish.parent_span_id == request.span_id
    assert generation_publish.attributes["messaging.system"] == "rabbitmq"
    recorded = [s for s in trace if s.service == "billing" and s.kind == "consumer"]
    generation_recorded = next(
        s for s in recorded if s.attributes["messaging.message.id"] == generation_id
    )
    assert generation_recorded.parent_span_id == generation_publish.span_id
    assert {spans_by_id[s.parent_span_id or ""].parent_span_id for s in recorded} == {
        request.span_id
    }

    # The job: a trace of its own, from the jobs service's request to billing's reconciling.
    job_recorded = next(
        s
        for s in spans
        if s.service == "billing"
        and s.attributes.get("messaging.rabbitmq.destination.routing_key") == JobCreated.routing_key
    )
    job_trace = by_id([s for s in spans if s.trace_id == job_recorded.trace_id])
    job_publish = job_trace[job_recorded.parent_span_id or ""]
    assert (job_publish.service, job_publish.kind) == ("jobs", "producer")
    job_request = job_trace[job_publish.parent_span_id or ""]
    assert (job_request.service, job_request.name) == ("jobs", "POST /api/jobs")

    # Each batch is a root of its own, linking the messages it recorded.
    batches = [s for s in spans if s.name == "record batch"]
    assert all(s.service == "billing" and s.parent_span_id is None for s in batches)
    assert (generation_recorded.trace_id, generation_recorded.span_id) in {
        link for s in batches for link in s.links
    }
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
