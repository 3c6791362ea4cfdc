"""RabbitMQ as a three-node cluster: the billing flow survives losing a node.

One real cluster (three `rabbitmq-server` nodes on this machine) serves the
module. The three services run against it with every node in `RABBITMQ_URL`;
requests stream through the HTTP services while a node is killed, stopped or
paused. Every test ends on the ledger: each event billed exactly once, every
job known once, no draft left, nothing in an outbox or the DLQ.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from uuid import UUID

import httpx
import pytest
from faststream.rabbit import RabbitBroker

from contracts.topology import QUORUM_REPLICAS, Topology
from services.servicekit.broker import make_broker
from tests.chaos.harness import Figures, Ledger, ledger
from tests.support.auth import bearer
from tests.support.broker import declare_topology_at
from tests.support.cluster import Cluster, Node
from tests.support.cluster import cluster as cluster  # the module's cluster fixture
from tests.support.databases import ServiceDatabases
from tests.support.stack import Stack, start_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.chaos

DESCRIPTION = "Platform engineer: brokers, replicas and failover."
DRAFT_ROWS = "SELECT count(*) AS n FROM question_generation_usage WHERE draft_job_id IS NOT NULL"
OUTBOX_ROWS = "SELECT count(*) AS n FROM outbox"
# Lost nodes are noticed by heartbeats in a few seconds (the default, 10 s, takes ~20 s).
HEARTBEAT = "heartbeat=2"


def named(url: str, name: str) -> str:
    """Every URL of `url` with a heartbeat and a connection name the cluster shows."""
    return ",".join(f"{node}?{HEARTBEAT}&name={name}" for node in url.split(","))


@dataclass
class Stream:
    """Drafts served through the HTTP services: two generations each, then the job."""

    events: list[UUID] = field(default_factory=list)
    jobs: list[UUID] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # statuses that were not 2xx
    served: int = 0  # requests answered

    @property
    def requests(self) -> int:
        return len(self.events) + len(self.jobs) + len(self.failed)


async def serve(
    stack: Stack, company: UUID, drafts: int, stream: Stream, *, concurrency: int = 16
) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def post(client: httpx.AsyncClient, path: str, body: dict[str, object]) -> UUID | None:
        async with gate:
            response = await client.post(path, json=body, headers=bearer(company))
        stream.served += 1
        if not response.is_success:
            stream.failed.append(response.status_code)
            return None
        return UUID(response.json()["generationId" if "ai" in path else "id"])

    async def one_draft(index: int) -> None:
        draft = str(uuid.uuid4())
        for number in (3, 7):
            generated = await post(
                stack.questions,
                "/api/ai/generate-questions",
                {"jobDescription": DESCRIPTION, "numberOfQuestions": number, "jobId": draft},
            )
            if generated is not None:
                stream.events.append(generated)
        job = await post(
            stack.jobs, "/api/jobs", {"title": f"Engineer {index}", "draftJobId": draft}
        )
        if job is not None:
            stream.jobs.append(job)

    await asyncio.gather(*(one_draft(index) for index in range(drafts)))


async def when_served(stream: Stream, requests: int) -> None:
    await eventually(lambda: _now(stream.served), until=lambda n: n >= requests, timeout=120)


async def _now(value: int) -> int:
    return value


@dataclass
class Outcome:
    usage: Ledger
    known: Ledger
    drafts_left: int
    outbox_left: int


async def settled(stack: Stack, stream: Stream, *, timeout: float = 90.0) -> Outcome:
    """Wait until every event and job reached billing, then read the ledger once more."""

    async def billed() -> tuple[int, int]:
        usage = await ledger(stack.dbs.billing, stream.events)
        known = await ledger(stack.dbs.billing, stream.jobs, table="known_jobs", column="job_id")
        return usage.lost, known.lost

    await eventually(billed, until=lambda lost: lost == (0, 0), timeout=timeout, interval=0.5)
    await asyncio.sleep(1.0)  # a late duplicate would show now
    drafts = await stack.fetch(stack.dbs.billing, DRAFT_ROWS)
    outbox = [
        (await stack.fetch(database, OUTBOX_ROWS))[0]["n"]
        for database in (stack.dbs.question_gen, stack.dbs.jobs)
    ]
    return Outcome(
        usage=await ledger(stack.dbs.billing, stream.events),
        known=await ledger(stack.dbs.billing, stream.jobs, table="known_jobs", column="job_id"),
        drafts_left=drafts[0]["n"],
        outbox_left=sum(outbox),
    )


def check(outcome: Outcome, stream: Stream, figures: Figures) -> None:
    figures.ledger(outcome.usage)
    figures.ledger(outcome.known, prefix="jobs_")
    figures.record(
        requests=stream.requests,
        not_2xx=len(stream.failed),
        drafts_left=outcome.drafts_left,
        outbox_left=outcome.outbox_left,
    )
    assert stream.failed == [], stream.failed[:10]
    assert outcome.usage.exact, outcome.usage
    assert outcome.known.exact, outcome.known
    assert outcome.drafts_left == 0
    assert outcome.outbox_left == 0


async def dlq_depth(cluster: Cluster, topology: Topology) -> int:
    output = await cluster.live().ctl("list_queues", "name", "messages", "--quiet")
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] == topology.billing_dlq_name:
            return int(parts[1])
    raise AssertionError(f"no DLQ in {output}")


@asynccontextmanager
async def services_on(
    cluster: Cluster,
    dbs: ServiceDatabases,
    prefix: str,
    *,
    questions: Node,
    jobs: Node,
    billing: Node,
) -> AsyncIterator[Stack]:
    """The three services on the cluster, each listing every node, its given node first."""
    overrides = {
        service: {"rabbitmq_url": named(cluster.url_from(first), service)}
        for service, first in (("question_gen", questions), ("jobs", jobs), ("billing", billing))
    }
    async with start_stack(
        dbs,
        prefix,
        question_overrides=overrides["question_gen"],
        jobs_overrides=overrides["jobs"],
        billing_overrides=overrides["billing"],
    ) as stack:
        yield stack


async def on_node(cluster: Cluster, name: str, expected: Node, timeout: float = 60.0) -> None:
    await eventually(
        lambda: cluster.connection_nodes(name),
        until=lambda nodes: nodes == [expected.name],
        timeout=timeout,
        interval=0.5,
    )


async def billing_ready(stack: Stack) -> None:
    await eventually(
        lambda: stack.billing.get("/readyz"),
        until=lambda response: response.status_code == 200,
        timeout=60,
        interval=0.5,
    )


async def during(serving: Awaitable[None], fault: Callable[[], Awaitable[None]]) -> None:
    """Run the fault while requests stream; both must finish."""
    task = asyncio.ensure_future(serving)
    try:
        await fault()
    finally:
        await task


async def test_connects_to_the_first_node_that_answers(cluster: Cluster, prefix: str) -> None:
    """A URL list whose first node is gone: the broker connects to the next one."""
    dead = "amqp://guest:guest@127.0.0.1:1/"
    broker: RabbitBroker = make_broker(f"{dead},{cluster.nodes[1].url}", app_id="failover")
    await broker.connect()
    try:
        assert await broker.ping(timeout=2.0)
        connection = broker._connection
        assert connection is not None
        assert connection.url.port == cluster.nodes[1].amqp_port
    finally:
        await broker.stop()

    with pytest.raises(ValueError, match="amqp"):
        make_broker(f"{cluster.nodes[0].url},http://example.invalid/", app_id="failover")


async def test_queues_are_replicated_on_three_nodes(cluster: Cluster, prefix: str) -> None:
    topology = Topology(prefix)
    await declare_topology_at(cluster.url, topology)
    await declare_topology_at(cluster.url_from(cluster.nodes[2]), topology)  # again: a no-op
    every_node = sorted(node.name for node in cluster.nodes)
    assert len(every_node) == QUORUM_REPLICAS
    for queue in (
        topology.billing_queue_name,
        topology.billing_dlq_name,
        topology.question_billing_queue_name,  # billing's own events
    ):
        assert await cluster.members(queue) == every_node


async def test_leader_killed_mid_stream_bills_every_event_once(
    cluster: Cluster, dbs: ServiceDatabases, prefix: str, company: UUID, figures: Figures
) -> None:
    topology = Topology(prefix)
    await declare_topology_at(cluster.url, topology)
    leader = await cluster.leader(topology.billing_queue_name)
    stream = Stream()
    drafts = 1000  # 2,000 generations and 1,000 jobs: 3,000 requests and events
    started = time.monotonic()
    # Every service starts on the leader, so every connection is lost with it.
    async with services_on(
        cluster, dbs, prefix, questions=leader, jobs=leader, billing=leader
    ) as stack:

        async def kill_and_restart() -> None:
            await when_served(stream, 600)
            leader.kill()
            killed_at = stream.served
            await asyncio.sleep(3.0)
            await cluster.restart(leader)
            figures.record(killed_after=killed_at, restarted_after=stream.served)

        await during(serve(stack, company, drafts, stream), kill_and_restart)
        outcome = await settled(stack, stream)
        await billing_ready(stack)  # resumed on its own, on a node that answers
        new_leader = await cluster.leader(topology.billing_queue_name)
        dlq = await dlq_depth(cluster, topology)
    figures.record(
        killed=leader.name,
        new_leader=new_leader.name,
        dlq=dlq,
        seconds=round(time.monotonic() - started, 1),
    )
    check(outcome, stream, figures)
    assert stream.requests == 3 * drafts
    assert dlq == 0


async def test_billing_moves_twice_when_its_nodes_stop(
    cluster: Cluster, dbs: ServiceDatabases, prefix: str, company: UUID, figures: Figures
) -> None:
    first, second, third = cluster.nodes
    topology = Topology(prefix)
    await declare_topology_at(cluster.url_from(third), topology)
    stream = Stream()
    visited: list[str] = []
    async with services_on(
        cluster, dbs, prefix, questions=first, jobs=third, billing=first
    ) as stack:
        await on_node(cluster, "billing", first)
        visited.append(first.name)

        async def stop_two_in_turn() -> None:
            for stopping, moved_to, served in ((first, second, 200), (second, third, 500)):
                await when_served(stream, served)
                await cluster.stop_app(stopping)
                await on_node(cluster, "billing", moved_to)
                visited.append(moved_to.name)
                await cluster.start_app(stopping)  # back before the next stops: a majority
                await cluster.wait_running_nodes(3)

        await during(serve(stack, company, 300, stream), stop_two_in_turn)
        outcome = await settled(stack, stream)
        await billing_ready(stack)
        dlq = await dlq_depth(cluster, topology)
    figures.record(billing_nodes=visited, dlq=dlq)
    check(outcome, stream, figures)
    assert visited == [first.name, second.name, third.name]
    assert dlq == 0


async def test_paused_minority_node_loses_nothing_it_accepted(
    cluster: Cluster, dbs: ServiceDatabases, prefix: str, company: UUID, figures: Figures
) -> None:
    topology = Topology(prefix)
    await declare_topology_at(cluster.url, topology)
    leader = await cluster.leader(topology.billing_queue_name)
    minority = next(node for node in cluster.nodes if node is not leader)
    stream = Stream()
    # The question service publishes through the node that will be cut off.
    async with services_on(
        cluster, dbs, prefix, questions=minority, jobs=leader, billing=leader
    ) as stack:
        await on_node(cluster, "question_gen", minority)

        async def pause_then_resume() -> None:
            await when_served(stream, 300)
            cluster.pause(minority)
            paused_at = stream.served
            try:
                # The majority goes on: what was served before and during the pause is
                # billed while the node is still silent (the relay left it for another).
                await when_served(stream, paused_at + 200)
                during_pause = list(stream.events)
                await eventually(
                    lambda: ledger(stack.dbs.billing, during_pause),
                    until=lambda seen: seen.lost == 0,
                    timeout=90,
                    interval=0.5,
                )
                figures.record(billed_while_paused=len(during_pause))
            finally:
                cluster.resume(minority)
            figures.record(paused_after=paused_at)

        await during(serve(stack, company, 300, stream), pause_then_resume)
        outcome = await settled(stack, stream)
        await cluster.wait_running_nodes(3)
        dlq = await dlq_depth(cluster, topology)
    figures.record(minority=minority.name, dlq=dlq)
    check(outcome, stream, figures)
    assert dlq == 0
