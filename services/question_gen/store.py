"""Every SQL statement of the question service. Functions take a connection and never commit."""

from __future__ import annotations

from contracts.events import QuestionsGenerated
from services.question_gen.budgets.rules import Settlement
from services.servicekit import outbox
from services.servicekit.db import Connection

# Remember a generation (its id is the event's id); written with its event. Under a
# budget it also settles its reservation (`budgets/`): the reservation and the cost.
RECORD_GENERATION = """
INSERT INTO generations (
    id, company_id, job_id, draft_job_id, question_count,
    prompt_tokens, completion_tokens, total_tokens, model, created_at, reservation_id, cost,
    cached_prompt_tokens, reasoning_tokens, usage_source, stream_end
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
RETURNING id
"""


async def record_generation(
    conn: Connection,
    event: QuestionsGenerated,
    *,
    correlation_id: str | None,
    settles: Settlement | None = None,
    stream_end: str | None = None,
) -> None:
    """The generation row and its QuestionsGenerated event: one round trip, atomic.

    `stream_end`: for a streamed generation, what ended the stream (see migration 0005).
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
        settles.reservation_id if settles else None,
        settles.cost if settles else None,
        event.cached_prompt_tokens,
        event.reasoning_tokens,
        event.usage_source,
        stream_end,
    )
    await outbox.write_with_event(
        conn, RECORD_GENERATION, arguments, event, correlation_id=correlation_id
    )
