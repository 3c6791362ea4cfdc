"""The ledger of LLM calls: each `LlmCallFinished` kept once, at its provider cost.

Called once per batch by the ledger's core (`ledger/record.py`), in the batch's
transaction: the calls are priced with the model price book as it stands under
its shared lock (see `store.py`), and inserted under their event id, so a
redelivery adds nothing. What they add to the margin is the margin rollups'
effect (`keep.py`), given the calls made now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from contracts.events import LlmCallFinished
from services.billing.costs import store
from services.billing.costs.rules import Call, ModelBook, Tokens, price_names
from services.servicekit.db import Connection


@dataclass(frozen=True)
class CallRecorded:
    """What an LlmCallFinished did: `new` is false for a redelivery."""

    new: bool
    outcome: str
    provider_cost: Decimal | None  # None: unpriced


@dataclass(frozen=True)
class RecordedCalls:
    """A batch's calls, priced, and which of them were made now."""

    calls: Sequence[Call]
    inserted: set[UUID]

    @property
    def new(self) -> list[Call]:
        return [call for call in self.calls if call.event_id in self.inserted]

    def results(self) -> dict[UUID, CallRecorded]:
        return {
            call.event_id: CallRecorded(
                call.event_id in self.inserted, call.outcome, call.provider_cost
            )
            for call in self.calls
        }


def unpriced(event: LlmCallFinished) -> Call:
    """The call an event reports, before it is priced."""
    return Call(
        event_id=event.event_id,
        company_id=event.company_id,
        model=event.model,
        outcome=event.outcome,
        generation_id=event.generation_id,
        tokens=Tokens(
            event.prompt_tokens,
            event.cached_prompt_tokens,
            event.completion_tokens,
            event.reasoning_tokens,
        ),
        usage_source=event.usage_source,
        occurred_at=event.occurred_at,
        provider_cost=None,
        model_price_id=None,
    )


async def price_calls(conn: Connection, calls: Sequence[Call]) -> list[Call]:
    """Each call at the version in force at its occurredAt (one query for the batch)."""
    names = [name for call in calls for name in price_names(call.model)]
    book = ModelBook(await store.versions_of(conn, names))
    return [call.priced(book.price_for(call.model, call.occurred_at)) for call in calls]


async def record_calls(conn: Connection, events: Sequence[LlmCallFinished]) -> RecordedCalls:
    """Price and insert the batch's calls, inside its transaction."""
    if not events:
        return RecordedCalls((), set())
    await store.share_book(conn)
    calls = await price_calls(conn, [unpriced(event) for event in events])
    return RecordedCalls(calls, await store.insert_calls(conn, calls))
