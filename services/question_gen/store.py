"""Every SQL statement of the service. Functions take a connection and never commit."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.events import LlmCallFinished, QuestionsGenerated
from services.question_gen.budgets.rules import HoldLost, Settlement
from services.servicekit import outbox
from services.servicekit.db import Connection

# What the generation row needs first (`budgets/`): under a limit, its reservation is
# marked settled, under the reservation's row lock and only if it is still there (an
# expiry or a release takes only an unsettled one); then, for every generation, with or
# without a limit, its cost is added to its period's unfolded spends, counted from this
# commit on. A reservation gone (the request outlived its hold): nothing at all is written.
#
# The same for the company's credits (`credits/`): its credit reservation, in
# credit_only, is settled likewise; in a credit mode its cost counts as not yet billed
# until billing names the generation as recorded (the mode read here as well as by the
# guard: a process that still remembers the company in mode none counts it all the same).
RECORD_GENERATION_AHEAD = """
settles AS (
    UPDATE budget_reservations SET settled = true WHERE id = $11 RETURNING id
),
settles_credits AS (
    UPDATE credit_reservations SET settled = true WHERE id = $18 RETURNING id
),
recordable AS (
    SELECT WHERE ($11::uuid IS NULL OR EXISTS (SELECT FROM settles))
        AND ($18::uuid IS NULL OR EXISTS (SELECT FROM settles_credits))
),
spent AS (
    INSERT INTO budget_spends (generation_id, company_id, period, cost, reservation_id)
    SELECT $1, $2, $13, $12, $11 FROM recordable
),
spent_credits AS (
    INSERT INTO credit_spends (generation_id, company_id, cost, reservation_id)
    SELECT $1, $2, $12, $18 FROM recordable
    WHERE $12 > 0 AND ($19::boolean OR EXISTS (
        SELECT FROM credit_accounts c WHERE c.company_id = $2 AND c.mode <> 'none'
    ))
)
"""

# Remember a generation (its id is the event's id); written with its event, its spend and
# the settling of its reservation, in one statement.
RECORD_GENERATION = """
INSERT INTO generations (
    id, company_id, job_id, draft_job_id, question_count,
    prompt_tokens, completion_tokens, total_tokens, model, created_at, reservation_id, cost,
    cached_prompt_tokens, reasoning_tokens, usage_source, stream_end
)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $14, $15, $16, $17 FROM recordable
RETURNING id
"""


async def record_generation(
    conn: Connection,
    event: QuestionsGenerated,
    *,
    correlation_id: str | None,
    settles: Settlement,
    stream_end: str | None = None,
) -> None:
    """The generation row, its spend and its QuestionsGenerated event: one round trip, atomic.

    `HoldLost` when its reservation is gone: nothing is written. `stream_end`: for a
    streamed generation, what ended the stream (see migration 0005).
    """
    arguments = (
        event.event_id,
        event.company_id,
        event.job_id,
        event.draft_job_id,
        event.question_count,
        event.prompt_tokens,
        event.completion_tokens,
        event.total_tokens,
        event.model,
        event.occurred_at,
        settles.reservation_id,
        settles.cost,
        settles.period,
        event.cached_prompt_tokens,
        event.reasoning_tokens,
        event.usage_source,
        stream_end,
        settles.credit_reservation_id,
        settles.credit_spend,
    )
    written = await outbox.write_with_event(
        conn,
        RECORD_GENERATION,
        arguments,
        event,
        correlation_id=correlation_id,
        ahead=RECORD_GENERATION_AHEAD,
    )
    if written is None:
        raise HoldLost(event.company_id, settles.period)


async def record_calls(
    conn: Connection, events: Sequence[LlmCallFinished], *, correlation_id: str | None
) -> None:
    """The `LlmCallFinished` events of calls to the LLM, in the caller's transaction (with
    the generation that billed one of them, or on their own): one statement."""
    await outbox.enqueue_many(conn, events, correlation_id=correlation_id)
