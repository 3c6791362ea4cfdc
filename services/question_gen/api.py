"""HTTP routes of the question service. Thin: validate, authorize, delegate."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from services.question_gen.handlers import QuestionGenerator
from services.question_gen.schemas import GenerateQuestionsRequest, GenerateQuestionsResponse
from services.servicekit.auth import CurrentPrincipal, ensure_company
from services.servicekit.idempotency import validate_key

router = APIRouter(prefix="/api/ai", tags=["questions"])

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


async def get_generator(request: Request) -> QuestionGenerator:
    generator: QuestionGenerator = request.app.state.generator
    return generator


Generator = Annotated[QuestionGenerator, Depends(get_generator)]


@router.post(
    "/generate-questions",
    response_model=GenerateQuestionsResponse,
    responses={
        401: {"description": "no valid token", **PROBLEM},
        403: {"description": "companyId differs from the token's", **PROBLEM},
        409: {"description": "the same Idempotency-Key is still in progress", **PROBLEM},
        422: {"description": "invalid request", **PROBLEM},
        502: {"description": "the LLM's answer was malformed; nothing billed", **PROBLEM},
        503: {"description": "the LLM is rate limited or unreachable; nothing billed", **PROBLEM},
        504: {"description": "the LLM timed out; nothing billed", **PROBLEM},
    },
)
async def generate_questions(
    body: GenerateQuestionsRequest,
    principal: CurrentPrincipal,
    generator: Generator,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    company_id = ensure_company(principal, body.company_id)
    key = validate_key(idempotency_key) if idempotency_key is not None else None
    result = await generator.generate(company_id, body, key)
    if isinstance(result, dict):  # an idempotent replay, exactly as first answered
        return JSONResponse(result)
    return result
