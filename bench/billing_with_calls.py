"""`billing_with_calls`: billing throughput with each generation's LLM call beside it.

Benchmark 1's drain (a fresh quorum queue preloaded before anyone consumes, one
`python -m services.billing`, timed from its consumer's registration), twice per
round on fresh databases:

- ours: N `QuestionsGenerated` and, beside each, its billed `LlmCallFinished`
  (2N messages, as the question service's outbox sends them): done when the N
  usage rows and the N calls are committed;
- baseline: the same N `QuestionsGenerated` alone: done at N usage rows.

Rounds alternate which side goes first; medians are compared in usage events per
second (the issue's measure: the same number of usage events) and, for the
record, in messages per second (what a call costs beside a usage event).
"""

from __future__ import annotations

from bench.billing_throughput import billing_drain
from bench.harness import Profile, Result, median

BAR = 0.9


async def run(profile: Profile) -> Result:
    with_calls: list[float] = []
    alone: list[float] = []
    exactly_once = True
    for round_ in range(profile.rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        for calls in order:
            drained = await billing_drain(profile.events, seed=round_ + 1, calls=calls)
            (with_calls if calls else alone).append(drained.rate)
            exactly_once = exactly_once and drained.exactly_once
    ours, baseline = median(with_calls), median(alone)
    ratio = ours / baseline
    result = Result(
        name="billing_with_calls",
        ours=ours,
        baseline=baseline,
        unit="usage events/s",
        ratio=ratio,
        bar=f"with calls / without >= {BAR} (usage events)",
        passed=ratio >= BAR and exactly_once,
        details={
            "events": profile.events,
            "rounds": profile.rounds,
            "with_calls_rounds": [round(rate) for rate in with_calls],
            "alone_rounds": [round(rate) for rate in alone],
            # Two messages per usage event on our side.
            "messages_ratio": round(2 * ratio, 3),
            "exactly_once": exactly_once,
        },
    )
    if not exactly_once:
        result.notes.append("usage rows did not match the events one to one")
    return result
