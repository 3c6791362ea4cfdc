"""HTTP bodies of reconciliation (operators only). Token and request counts are integers;
a percent is a 2-place decimal string, null where ours is 0 and theirs is not."""

from __future__ import annotations

import datetime as dt
from typing import Literal
from uuid import UUID

from pydantic import Field

from services.billing.costs.schemas import Percent
from services.billing.reads.schemas import CamelModel
from services.billing.reconciliation.rules import Status


class Figures(CamelModel):
    requests: int
    input_tokens: int = Field(description="Cached input tokens included.")
    cached_input_tokens: int
    output_tokens: int = Field(description="Reasoning tokens included.")


class PercentFigures(CamelModel):
    requests: Percent | None
    input_tokens: Percent | None
    cached_input_tokens: Percent | None
    output_tokens: Percent | None


class DayModel(CamelModel):
    date: dt.date = Field(description="The UTC day.")
    model: str = Field(description="The model's stem: its dated snapshots together.")
    status: Status
    ours: Figures = Field(description="Billing's ledger of calls.")
    theirs: Figures = Field(description="The provider's usage API.")
    difference: Figures = Field(description="Theirs less ours.")
    difference_percent: PercentFigures = Field(
        description="The difference in percent of ours; null where ours is 0 and theirs is not."
    )
    run_id: UUID = Field(description="The run these figures are from.")


class Run(CamelModel):
    run_id: UUID
    started_at: dt.datetime
    finished_at: dt.datetime
    status: Literal["succeeded", "failed"]
    reason: str | None = Field(description="Why the run failed; null when it succeeded.")
    from_: dt.date = Field(alias="from")
    to: dt.date
    trigger: Literal["schedule", "request"] = Field(
        description="`schedule`: the daily run; `request`: an operator's."
    )


class Reconciliation(CamelModel):
    enabled: bool = Field(description="False without OPENAI_ADMIN_KEY: nothing runs.")
    days: list[DayModel] = Field(description="By day, then model.")
    runs: list[Run] = Field(description="The latest first.")


class RunAccepted(CamelModel):
    run_id: UUID = Field(description="Listed once finished: GET ...reconciliation?runId=.")
    from_: dt.date = Field(alias="from")
    to: dt.date
