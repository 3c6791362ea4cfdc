"""HTTP routes of the question service. Thin: validate, authorize, delegate."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from contracts.events import FOUR_PLACES
from services.question_gen.budgets.rules import BudgetExceeded, HoldLost
from services.question_gen.credits.rules import CreditsExhausted
from services.question_gen.generation import MalformedAnswer
from services.question_gen.handlers import GenerationNotStarted, QuestionGenerator
from services.question_gen.llm import LlmCredentialsRefused, LlmTimeout, LlmUnavailable
from services.question_gen.schemas import GenerateQuestionsRequest, GenerateQuestionsResponse
from services.question_gen.streaming import EVENT_STREAM, QuestionStreams, wants_stream
from services.servicekit.auth import AUTHENTICATED, CurrentPrincipal, ensure_company
from services.servicekit.problems import ErrorMap, ProblemOf, documented

router = APIRouter(prefix="/api/ai", tags=["questions"])


def _not_billed(exc: Exception) -> str:
    return f"{exc}; nothing was billed"


# The problem type of a request refused by its company's monthly budget.
BUDGET_EXCEEDED = "urn:problem-type:budget-exceeded"
# The problem type of a request of a company in credit_only that its credits cannot cover.
CREDITS_EXHAUSTED = "urn:problem-type:credits-exhausted"

# A failed generation is billed nothing, and the answer says so.
ERRORS: ErrorMap = {
    BudgetExceeded: ProblemOf[BudgetExceeded](
        402,
        "the company's monthly budget has no room for this request; nothing billed",
        members=lambda exc: {
            "type": BUDGET_EXCEEDED,
            "period": exc.period,
            "cost": str(exc.cost.quantize(FOUR_PLACES)),
        },
    ),
    CreditsExhausted: ProblemOf[CreditsExhausted](
        402,
        "the company's prepaid credits have no room for this request; nothing billed",
        members=lambda exc: {
            "type": CREDITS_EXHAUSTED,
            "cost": str(exc.cost.quantize(FOUR_PLACES)),
        },
    ),
    MalformedAnswer: ProblemOf[MalformedAnswer](
        502, "the LLM's answer was malformed; nothing billed", detail=_not_billed
    ),
    LlmCredentialsRefused: ProblemOf[LlmCredentialsRefused](
        503,
        "the LLM provider refused our credentials; nothing billed",
        detail=lambda exc: f"the LLM provider refused our credentials ({exc}); nothing was billed",
    ),
    LlmUnavailable: ProblemOf[LlmUnavailable](
        503,
        "the LLM is rate limited or unreachable; nothing billed",
        detail=_not_billed,
        headers=lambda exc: {"Retry-After": str(exc.retry_after)},
    ),
    LlmTimeout: ProblemOf[LlmTimeout](504, "the LLM timed out; nothing billed", detail=_not_billed),
    GenerationNotStarted: ProblemOf[GenerationNotStarted](
        503,
        "the service is too busy to start this generation; nothing billed",
        headers=lambda exc: {"Retry-After": "1"},
    ),
    HoldLost: ProblemOf[HoldLost](
        503,
        "the request outlived its budget reservation; nothing billed",
        detail=_not_billed,
        headers=lambda exc: {"Retry-After": "1"},
    ),
}


async def get_generator(request: Request) -> QuestionGenerator:
    generator: QuestionGenerator = request.app.state.generator
    return generator


Generator = Annotated[QuestionGenerator, Depends(get_generator)]


async def get_streams(request: Request) -> QuestionStreams:
    streams: QuestionStreams = request.app.state.streams
    return streams


Streams = Annotated[QuestionStreams, Depends(get_streams)]

# The stream's answer in OpenAPI: its events, each one line of JSON.
STREAMED = {
    EVENT_STREAM: {
        "schema": {"type": "string"},
        "example": 'event: question\ndata: {"index": 0, "text": "..."}\n\n'
        "event: done\ndata: {...the JSON answer...}\n\n",
    }
}


@router.post(
    "/generate-questions",
    response_model=GenerateQuestionsResponse,
    responses={
        200: {
            "description": "The questions; with `Accept: text/event-stream`, a stream of "
            "`question` events as the model writes them, then `done` (this object) or "
            "`error` (a problem object naming what was billed)",
            "content": STREAMED,
        },
        **documented(
            ERRORS,
            {**AUTHENTICATED, 409: "the same Idempotency-Key is still in progress"},
        ),
    },
)
async def generate_questions(
    body: GenerateQuestionsRequest,
    principal: CurrentPrincipal,
    generator: Generator,
    streams: Streams,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> GenerateQuestionsResponse | Response:
    company_id = ensure_company(principal, body.company_id)
    if wants_stream(accept):
        return await streams.open(company_id, body, idempotency_key)
    return await generator.generate(company_id, body, idempotency_key)
