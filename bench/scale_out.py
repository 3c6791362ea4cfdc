"""6. Scale-out: billing throughput with one and with two worker processes on one queue.

The same preloaded queue (N events, plus 10% of them published a second time)
drained by one worker, then by two competing for it. Both must leave exactly
one usage row per event. The ratio (2 workers over 1) is reported for the
record: on a 2-core machine shared with PostgreSQL and RabbitMQ it depends on
how much idle CPU there is; the bar is exactly-once in both runs.
"""

from __future__ import annotations

from bench.billing_throughput import Drain, billing_drain
from bench.harness import Profile, Result, median


async def run(profile: Profile) -> Result:
    duplicates = profile.events // 10
    runs: dict[int, list[Drain]] = {1: [], 2: []}
    rounds = max(1, profile.rounds - 1)
    for round_ in range(rounds):
        order = (1, 2) if round_ % 2 == 0 else (2, 1)
        for workers in order:
            runs[workers].append(
                await billing_drain(
                    profile.events, workers=workers, duplicates=duplicates, seed=100 + round_
                )
            )
    one, two = median([d.rate for d in runs[1]]), median([d.rate for d in runs[2]])
    exactly_once = all(d.exactly_once for drains in runs.values() for d in drains)
    result = Result(
        name="scale_out",
        ours=two,
        baseline=one,
        unit="events/s (2 vs 1 worker)",
        ratio=two / one,
        bar="one row per event, 1 and 2 workers",
        passed=exactly_once,
        details={
            "events": profile.events,
            "duplicate_messages": duplicates,
            "rounds": rounds,
            "one_worker_rounds": [round(d.rate, 1) for d in runs[1]],
            "two_worker_rounds": [round(d.rate, 1) for d in runs[2]],
            "rows": [d.rows for drains in runs.values() for d in drains],
            "exactly_once": exactly_once,
        },
    )
    if not exactly_once:
        result.notes.append("usage rows did not match the events one to one")
    return result
