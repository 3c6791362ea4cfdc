"""8. Billing throughput on a three-node RabbitMQ cluster, against the one-node figure.

Benchmark 1 (`billing_throughput`: the billing worker against the bare aio-pika
consumer, both draining the same preloaded quorum queue) is run twice in one
run: on the machine's own node, then on a three-node cluster started for the
purpose (`tests/support/cluster.py`), where every message is replicated on
three nodes before it is confirmed. Replication costs both sides alike, so
billing's ratio to the bare consumer should stay where it is: the bar is the
cluster ratio within 0.1 of the one-node ratio.

On the cluster, publisher, billing and the bare consumer all connect to the
node that leads the queue (where the queue was declared), as a one-node run does.
"""

from __future__ import annotations

from bench import billing_throughput, harness
from bench.harness import Profile, Result
from tests.support.cluster import three_node_cluster

BAR = 0.1


async def on_broker(url: str, profile: Profile) -> Result:
    """Benchmark 1 with every connection of the harness on `url`."""
    saved = harness.RABBITMQ_URL
    harness.RABBITMQ_URL = url
    try:
        return await billing_throughput.run(profile)
    finally:
        harness.RABBITMQ_URL = saved


async def run(profile: Profile) -> Result:
    one_node = await on_broker(harness.RABBITMQ_URL, profile)
    async with three_node_cluster() as cluster:
        clustered = await on_broker(cluster.nodes[0].url, profile)
    assert one_node.ratio is not None
    assert clustered.ratio is not None
    gap = abs(clustered.ratio - one_node.ratio)
    result = Result(
        name="cluster_throughput",
        ours=clustered.ours,
        baseline=clustered.baseline,
        unit="events/s",
        ratio=clustered.ratio,
        bar=f"|cluster ratio - one-node ratio ({one_node.ratio:.2f})| <= {BAR}",
        passed=gap <= BAR and one_node.passed and clustered.passed,
        details={
            "events": profile.events,
            "rounds": profile.rounds,
            "one_node_ours": round(one_node.ours, 1),
            "one_node_bare": round(one_node.baseline or 0.0, 1),
            "one_node_ratio": round(one_node.ratio, 3),
            "cluster_ours": round(clustered.ours, 1),
            "cluster_bare": round(clustered.baseline or 0.0, 1),
            "cluster_ratio": round(clustered.ratio, 3),
            "gap": round(gap, 3),
        },
        notes=[*one_node.notes, *clustered.notes],
    )
    return result
