"""SIGTERM while streams are in flight: each is billed exactly what it delivered, once."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from uuid import UUID

import asyncpg
import httpx
import pytest

from tests.support.auth import bearer
from tests.support.databases import ServiceDatabases
from tests.support.fake_llm import running_fake_llm, streamed
from tests.support.processes import SMALL_POOL, ServiceProcess, free_port, service_env
from tests.support.sse import STREAM, events
from tests.support.waiting import eventually

pytestmark = pytest.mark.chaos

STREAMS = 20
GRACEFUL_TIMEOUT = 1


async def test_sigterm_bills_each_stream_in_flight_what_it_delivered(
    dbs: ServiceDatabases, prefix: str, tmp_path: Path, company: UUID
) -> None:
    # Ten questions over four seconds: every stream is cut by the graceful timeout.
    with running_fake_llm(streamed(10, pace=0.4)) as fake:
        port = free_port()
        env = service_env(
            "question_gen",
            database_url=dbs.question_gen,
            prefix=prefix,
            port=port,
            extra={
                **SMALL_POOL,
                "DB_POOL_MAX_SIZE": "10",
                "OPENAI_API_KEY": "test-key",
                "OPENAI_BASE_URL": fake.url,
                "GRACEFUL_TIMEOUT_SECONDS": str(GRACEFUL_TIMEOUT),
            },
        )
        service = ServiceProcess(
            "services.question_gen", env, port=port, log=tmp_path / "questions.log"
        )
        await service.start()
        try:
            await service.wait_ready(60)
            received: dict[str, list[str]] = {}
            endings: dict[str, str] = {}

            async def stream(client: httpx.AsyncClient) -> None:
                draft = str(uuid.uuid4())
                received[draft] = []
                payload = {"draftJobId": draft, "jobDescription": "Go", "numberOfQuestions": 10}
                async with client.stream(
                    "POST",
                    service.base_url + "/api/ai/generate-questions",
                    json=payload,
                    headers={**bearer(company), **STREAM},
                ) as response:
                    assert response.status_code == 200
                    try:
                        async for event in events(response):
                            if event.name == "question":
                                received[draft].append(event.data["text"])
                            else:
                                endings[draft] = event.name
                    except httpx.RemoteProtocolError:
                        endings[draft] = "cut"

            async with httpx.AsyncClient(timeout=30) as client:
                streams = [asyncio.create_task(stream(client)) for _ in range(STREAMS)]
                await eventually(
                    lambda: asyncio.sleep(0, sum(1 for r in received.values() if r) == STREAMS),
                    timeout=30,
                )
                service.send(signal.SIGTERM)
                code = await service.wait(GRACEFUL_TIMEOUT + 30)
                await asyncio.gather(*streams)
        finally:
            await service.stop()

    assert code in (0, -signal.SIGTERM), service.tail()
    log = service.log.read_text()
    assert "Application shutdown complete" in log, service.tail()
    assert "Traceback" not in log, service.tail()

    conn = await asyncpg.connect(dbs.question_gen)
    try:
        rows = await conn.fetch(
            "SELECT draft_job_id, question_count, stream_end FROM generations"
            " WHERE company_id = $1",
            company,
        )
    finally:
        await conn.close()
    billed = {row["draft_job_id"]: row["question_count"] for row in rows}
    assert len(rows) == STREAMS  # once each
    assert billed == {draft: len(texts) for draft, texts in received.items()}
    assert all(1 <= len(texts) < 10 for texts in received.values())  # cut mid-stream
    assert {row["stream_end"] for row in rows} == {"stopped"}
    assert set(endings.values()) == {"error"}  # each told why its stream ended
