"""Pure rules of the ledger: what a generation costs, where its usage belongs, what to lock.

The client's `jobId` is never classified by its shape. It names a saved job
only if billing has seen that job's `JobCreated` (of the same company);
otherwise the usage is held as a draft and attached when a `JobCreated` names
the draft's key as its `jobId` or its `draftJobId`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from uuid import UUID

from contracts.events import FOUR_PLACES, JobCreated, LlmCallFinished, QuestionsGenerated
from contracts.pricing import PriceOutOfRange as PriceOutOfRange
from contracts.pricing import question_cost

# What the ledger records: a generation, a job its drafts may move onto, an LLM call.
Entry = QuestionsGenerated | JobCreated | LlmCallFinished


class PoisonMessage(ValueError):
    """A message no retry can make usable: dead-lettered at once, never retried."""


class CostOutOfRange(PoisonMessage):
    """A generation whose cost, at the price in force at its occurredAt, the ledger cannot hold."""


@dataclass(frozen=True)
class Pricing:
    price_per_10_questions: Decimal = Decimal("0.10")
    profit_margin_percent: Decimal = Decimal("0")

    def cost(self, question_count: int) -> Decimal:
        """The one pricing rule (`contracts.pricing`): shared with the question service."""
        return question_cost(
            question_count, self.price_per_10_questions, self.profit_margin_percent
        )

    def bill(self, event: QuestionsGenerated) -> Decimal:
        """The generation's cost at this price; `CostOutOfRange` if the ledger cannot hold it."""
        try:
            return self.cost(event.question_count)
        except PriceOutOfRange as exc:
            raise CostOutOfRange(f"event {event.event_id}: {exc}") from exc


def format_money(amount: Decimal) -> str:
    """Money on the wire: a decimal string with 4 places."""
    return str(amount.quantize(FOUR_PLACES, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class KnownJob:
    job_id: UUID
    company_id: UUID
    draft_job_id: str | None


@dataclass(frozen=True)
class Placement:
    """A usage row's home: a job, or a draft key to wait under."""

    job_id: UUID | None = None
    draft_job_id: str | None = None

    @property
    def is_draft(self) -> bool:
        return self.job_id is None


def draft_key(event: QuestionsGenerated) -> str:
    """The id a draft row is held under: the draft's id if sent, else the client's jobId."""
    if event.draft_job_id is not None:
        return event.draft_job_id
    assert event.job_id is not None  # the contract requires one of the two
    return str(event.job_id)


def references(event: QuestionsGenerated | JobCreated) -> set[str]:
    """Every id by which a generation and a job can meet."""
    refs = {str(event.job_id)} if event.job_id is not None else set()
    if event.draft_job_id is not None:
        refs.add(event.draft_job_id)
    return refs


class KnownJobs:
    """The jobs a batch knows, indexed once: by (company, job id) and (company, draft id)."""

    def __init__(self, jobs: Iterable[KnownJob]) -> None:
        self._by_id: dict[tuple[UUID, UUID], UUID] = {}
        self._by_draft: dict[tuple[UUID, str], UUID] = {}
        for job in jobs:
            self._by_id.setdefault((job.company_id, job.job_id), job.job_id)
            if job.draft_job_id is not None:
                self._by_draft.setdefault((job.company_id, job.draft_job_id), job.job_id)

    def by_id(self, company_id: UUID, job_id: UUID) -> UUID | None:
        return self._by_id.get((company_id, job_id))

    def by_draft(self, company_id: UUID, draft_job_id: str) -> UUID | None:
        return self._by_draft.get((company_id, draft_job_id))


def place(event: QuestionsGenerated, known: KnownJobs | Iterable[KnownJob]) -> Placement:
    """Attach to a known job of the same company, else hold as a draft.

    A job named by the client's jobId comes first, then a job made from a draft
    whose id is the client's jobId, then one made from the client's draftJobId.
    A batch builds its `KnownJobs` once, so placing an event is a few lookups.
    """
    jobs = known if isinstance(known, KnownJobs) else KnownJobs(known)
    company = event.company_id
    found = None
    if event.job_id is not None:
        found = jobs.by_id(company, event.job_id) or jobs.by_draft(company, str(event.job_id))
    if found is None and event.draft_job_id is not None:
        found = jobs.by_draft(company, event.draft_job_id)
    if found is not None:
        return Placement(job_id=found)
    return Placement(draft_job_id=draft_key(event))


def lock_key(company_id: UUID, reference: str) -> int:
    """A signed 64-bit advisory-lock key for one (company, id) meeting point."""
    digest = hashlib.blake2b(f"{company_id}:{reference}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_keys(events: Iterable[QuestionsGenerated | JobCreated]) -> list[int]:
    """Sorted, so that concurrent transactions take their locks in one order (no deadlock)."""
    return sorted(
        {lock_key(event.company_id, ref) for event in events for ref in references(event)}
    )
