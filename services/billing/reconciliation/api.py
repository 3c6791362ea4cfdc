"""The operator's routes of reconciliation: run it now, and list what the runs found.

Both need `platform:admin`. No company-facing answer carries any of it.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from services.billing.config import Settings
from services.billing.costs.api import ADMIN_ANSWERS, Operator
from services.billing.costs.margins import InvalidRange, check_range
from services.billing.reads.api import get_settings
from services.billing.reconciliation import schemas, store
from services.billing.reconciliation.rules import (
    DayModel,
    Figures,
    check_run_range,
    default_range,
)
from services.billing.reconciliation.run import RunOrder
from services.billing.reconciliation.schedule import Reconciler, ReconciliationOff, RunInProgress
from services.billing.reconciliation.store import Run, StoredDayModel
from services.servicekit.http import Clock, Pool
from services.servicekit.instants import Day
from services.servicekit.problems import Problem, documented, invalid

router = APIRouter(prefix="/api/billing/admin", tags=["reconciliation"])

LIST = "/api/billing/admin/reconciliation"
# The problem types of a run that cannot start.
RECONCILIATION_OFF = "urn:problem-type:reconciliation-off"
RUN_IN_PROGRESS = "urn:problem-type:reconciliation-in-progress"
# What the list shows when no range is named; the most runs it lists.
LIST_DAYS = 30
MAX_RUNS = 100

From = Annotated[Day | None, Query(alias="from", description="First UTC day, YYYY-MM-DD.")]
To = Annotated[Day | None, Query(description="Last UTC day, YYYY-MM-DD, included.")]


def get_reconciler(request: Request) -> Reconciler:
    reconciler: Reconciler = request.app.state.runtime.reconciler
    return reconciler


Runs = Annotated[Reconciler, Depends(get_reconciler)]
BillingSettings = Annotated[Settings, Depends(get_settings)]


@router.post(
    "/reconciliation/run",
    response_model=schemas.Reconciliation,
    responses={
        **documented(
            {},
            {
                **ADMIN_ANSWERS,
                409: "reconciliation is off (no OPENAI_ADMIN_KEY), or a run is in progress",
            },
        ),
        202: {
            "model": schemas.RunAccepted,
            "description": "The run goes on in the background; it is listed once it has finished "
            "(`Location`).",
        },
    },
)
async def run_reconciliation(
    operator: Operator,
    reconciler: Runs,
    pool: Pool,
    settings: BillingSettings,
    clock: Clock,
    from_: From = None,
    to: To = None,
) -> Any:
    """Compare the days `[from, to]` (default: the last week) with the provider's usage now.

    200 with the run and its day-models when it finishes within
    `RECONCILIATION_ANSWER_WITHIN_SECONDS` (a failed run too, with its reason); else 202.
    """
    today = clock().date()
    first, last = _run_range(from_, to, today)
    order = RunOrder(first, last, "request", requested_by=operator.user)
    try:
        started = await reconciler.request(order, clock)
    except ReconciliationOff as exc:
        raise Problem(409, str(exc), type=RECONCILIATION_OFF) from exc
    except RunInProgress as exc:
        raise Problem(409, str(exc), type=RUN_IN_PROGRESS) from exc
    done = await _within(started.task, settings.reconciliation_answer_within_seconds)
    if done is None:
        accepted = schemas.RunAccepted(run_id=started.run_id, from_=first, to=last)
        return JSONResponse(
            accepted.model_dump(mode="json", by_alias=True),
            status_code=202,
            headers={"Location": f"{LIST}?runId={started.run_id}"},
        )
    async with pool.acquire() as conn:
        rows = await store.run_results(conn, done.run_id)
    return _answer(reconciler.enabled, rows, [done])


@router.get(
    "/reconciliation",
    response_model=schemas.Reconciliation,
    responses=documented({}, {**ADMIN_ANSWERS, 404: "no run has this runId"}),
)
async def list_reconciliation(
    _: Operator,
    reconciler: Runs,
    pool: Pool,
    clock: Clock,
    from_: From = None,
    to: To = None,
    run_id: Annotated[
        UUID | None, Query(alias="runId", description="That run's day-models only.")
    ] = None,
) -> schemas.Reconciliation:
    """Each day and model of `[from, to]` (default: the last 30 days) as the latest run that
    succeeded over that day found it, and the runs over those days (the latest 100). With
    `runId`: that run and its own day-models (the history of a day that moved)."""
    async with pool.acquire() as conn:
        if run_id is not None:
            run = await store.run_of(conn, run_id)
            if run is None:
                raise Problem(404, f"no reconciliation run {run_id}")
            return _answer(reconciler.enabled, await store.run_results(conn, run_id), [run])
        first, last = _list_range(from_, to, clock().date())
        rows = await store.latest_results(conn, first, last)
        runs = await store.runs_over(conn, first, last, MAX_RUNS)
    return _answer(reconciler.enabled, rows, runs)


async def _within(task: asyncio.Task[Run | None], seconds: float) -> Run | None:
    """The run, if it finishes within `seconds`; None if it goes on (it is not cancelled)."""
    finished, _ = await asyncio.wait({task}, timeout=seconds)
    if not finished:
        return None
    run: Run | None = task.result()
    return run


def _run_range(first: date | None, last: date | None, today: date) -> tuple[date, date]:
    if first is None and last is None:
        first, last = default_range(today)
    elif last is None:
        last = today
    elif first is None:
        first = last - timedelta(days=6)
    assert first is not None
    assert last is not None
    try:
        check_run_range(first, last, today)
    except InvalidRange as exc:
        raise invalid(exc.field, str(exc)) from exc
    return first, last


def _list_range(first: date | None, last: date | None, today: date) -> tuple[date, date]:
    last = last or today
    first = first or last - timedelta(days=LIST_DAYS - 1)
    try:
        check_range(first, last)
    except InvalidRange as exc:
        raise invalid(exc.field, str(exc)) from exc
    return first, last


def _figures(figures: Figures) -> schemas.Figures:
    return schemas.Figures(
        requests=figures.requests,
        input_tokens=figures.input_tokens,
        cached_input_tokens=figures.cached_input_tokens,
        output_tokens=figures.output_tokens,
    )


def _day_model(stored: StoredDayModel) -> schemas.DayModel:
    row: DayModel = stored.row
    return schemas.DayModel(
        date=row.day,
        model=row.model,
        status=row.status,
        ours=_figures(row.ours),
        theirs=_figures(row.theirs),
        difference=_figures(row.difference),
        difference_percent=schemas.PercentFigures(**row.percent()),
        run_id=stored.run_id,
    )


def _run(run: Run) -> schemas.Run:
    return schemas.Run(
        run_id=run.run_id,
        started_at=run.started_at,
        finished_at=run.finished_at,
        status="succeeded" if run.succeeded else "failed",
        reason=run.reason,
        from_=run.first_day,
        to=run.last_day,
        trigger="schedule" if run.trigger == "schedule" else "request",
    )


def _answer(enabled: bool, rows: list[StoredDayModel], runs: list[Run]) -> schemas.Reconciliation:
    return schemas.Reconciliation(
        enabled=enabled, days=[_day_model(row) for row in rows], runs=[_run(run) for run in runs]
    )
