"""HTTP routes of the question service. Thin: validate, authorize, delegate."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from contracts.events import FOUR_PLACES
from services.question_gen.budgets.rules import BudgetExceeded, HoldLost
from services.question_gen.generation import MalformedAnswer
from services.question_gen.handlers import GenerationNotStarted, QuestionGenerator
from services.question_gen.llm import LlmCredentialsRefused, LlmTimeout, LlmUnavailable
from services.question_gen.schemas import GenerateQuestionsRequest, GenerateQuestionsResponse
from services.servicekit.auth import AUTHENTICATED, CurrentPrincipal, ensure_company
from services.servicekit.problems import ErrorMap, ProblemOf, documented

router = APIRouter(prefix="/api/ai", tags=["questions"])


def _not_billed(exc: Exception) -> str:
    return f"{exc}; nothing was billed"


# The problem type of a request refused by its company's monthly budget.
BUDGET_EXCEEDED = "urn:problem-type:budget-exceeded"

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


@router.post(
    "/generate-questions",
    response_model=GenerateQuestionsResponse,
    responses=documented(
        ERRORS,
        {**AUTHENTICATED, 409: "the same Idempotency-Key is still in progress"},
    ),
)
async def generate_questions(
    body: GenerateQuestionsRequest,
    principal: CurrentPrincipal,
    generator: Generator,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> GenerateQuestionsResponse:
    company_id = ensure_company(principal, body.company_id)
    return await generator.generate(company_id, body, idempotency_key)
