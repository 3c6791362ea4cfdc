"""Statements' use cases: close a period, read a statement, post and list adjustments.

Each opens its own transaction and speaks the domain: results, or domain errors
that the routes (and the operators' command) turn into answers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from services.billing.statements import store
from services.billing.statements.rules import LineCursor, Period, bill_in
from services.billing.statements.store import Adjustment, Figures, Line
from services.servicekit.db import Connection
from services.servicekit.pagination import Page


class PeriodNotEnded(Exception):
    """A period can be closed only once it is over."""

    def __init__(self, period: Period) -> None:
        super().__init__(f"period {period} has not ended yet (it ends at {period.end.isoformat()})")
        self.period = period


class NotTheCompanys(Exception):
    """A usage row or job that is not the company's (or does not exist): the same answer."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} not found")
        self.field = field


@dataclass(frozen=True)
class Closed:
    period: Period
    closed_at: datetime
    statements: int | None  # written by this call; None when it was already closed


@dataclass(frozen=True)
class StatementView:
    period: Period
    closed_at: datetime | None
    figures: Figures
    lines: Page[Line]
    adjustments: list[Adjustment]

    @property
    def total(self) -> Decimal:
        return self.figures.cost + self.figures.adjustment_total

    @property
    def amount_due(self) -> Decimal:
        """What is left to invoice: the total less the prepaid credits it drew."""
        return self.total - self.figures.credits_applied


async def close_period(pool: asyncpg.Pool, period: Period, now: datetime) -> Closed:
    """Close an ended period for every company; closing it again changes nothing."""
    if not period.has_ended(now):
        raise PeriodNotEnded(period)
    async with pool.acquire() as conn, conn.transaction():
        await store.lock_for_close(conn, period)
        already = await store.closed_at(conn, period)
        if already is not None:
            return Closed(period, already, None)
        written = await store.freeze(conn, period, now)
    return Closed(period, now, written)


async def read_statement(
    pool: asyncpg.Pool, company_id: UUID, period: Period, after: LineCursor | None, limit: int
) -> StatementView:
    """One page of a company's statement: frozen if its period is closed, live if not."""
    # One snapshot: the figures, the page and the adjustments agree even while billing writes.
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        closed_at = await store.closed_at(conn, period)
        read = store.frozen_statement if closed_at is not None else store.live_statement
        figures, lines = await read(conn, period, company_id, after, limit)
        adjustments = await store.list_adjustments(conn, company_id, period)
    return StatementView(period, closed_at, figures, lines, adjustments)


@dataclass(frozen=True)
class AdjustmentOrder:
    """What an operator asks for; the period and the time are billing's to decide."""

    company_id: UUID
    amount: Decimal
    reason: str
    usage_id: UUID | None
    job_id: UUID | None
    created_by: str | None


async def post_adjustment(conn: Connection, order: AdjustmentOrder, now: datetime) -> Adjustment:
    """Append an adjustment to the company's current open period."""
    async with conn.transaction():
        if order.usage_id is not None and not await store.owns_usage(
            conn, order.company_id, order.usage_id
        ):
            raise NotTheCompanys("usageId")
        if order.job_id is not None and not await store.owns_job(
            conn, order.company_id, order.job_id
        ):
            raise NotTheCompanys("jobId")
        # Like a late generation: the period of now, or the next open one if a close
        # got there first; the shared lock keeps a close from missing it.
        current = Period.of(now)
        closed = await store.share_periods(conn, [current])
        adjustment = Adjustment(
            id=uuid.uuid4(),
            company_id=order.company_id,
            period=bill_in(current, closed, now).period,
            amount=order.amount,
            reason=order.reason,
            usage_id=order.usage_id,
            job_id=order.job_id,
            created_by=order.created_by,
            created_at=now,
        )
        return await store.insert_adjustment(conn, adjustment)


async def list_adjustments(
    pool: asyncpg.Pool, company_id: UUID, period: Period
) -> list[Adjustment]:
    async with pool.acquire() as conn:
        return await store.list_adjustments(conn, company_id, period)
