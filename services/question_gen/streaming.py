"""Streamed generation: questions written to the client as the model writes them, and
the bill is what the client received.

`POST /api/ai/generate-questions` with `Accept: text/event-stream` makes the same
checks as the JSON call, in the same order, before anything is sent: the
company, the `Idempotency-Key` (a stream already ended replays what was
recorded), the reservation of the worst case (budget and credits alike). Then the
response (`GenerationStream`) runs two tasks: the stream's flow, and a watcher of the
client's connection that stops the flow the moment the client leaves.

The flow asks the writer to stream; each question it delivers is one `question`
event. The response's head is sent with the first of them, so that anything that
fails before (the LLM unreachable, a timeout, a malformed answer) is still the
usual problem JSON with its status, and the writer may still retry it. A
question counts as delivered once its frame was handed to the server's
transport for the client's connection (`send` returned while the client was
still there): a frame written in the very instant the connection is lost is
counted, as TCP itself cannot tell.

Whatever ends the flow (the answer complete, the client gone, the LLM failing or
timing out, the service stopping), it is finalised once: the `k` questions
delivered are recorded with their `QuestionsGenerated` event, the reservation
settled at their cost and the idempotency key completed, in one transaction; or,
with `k = 0`, the reservation and the key are given back and nothing is billed.
The finaliser runs in a task of its own, tracked here, which neither the
request's cancellation nor the client's disconnection can stop; `drain` waits for
every one before the service closes its pool. Then `done` (the JSON call's
object) or `error` (a problem object naming what was billed) ends the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.question_gen.budgets.guard import Reservation
from services.question_gen.generation import Answer, CallLog, Tokens
from services.question_gen.handlers import QuestionGenerator
from services.question_gen.llm import LlmTimeout, LlmUnavailable
from services.question_gen.metrics import (
    FIRST_QUESTION,
    LLM_CALLS,
    LLM_TOKENS,
    QUESTION_STREAMS,
    QUESTIONS_GENERATED,
)
from services.question_gen.schemas import GenerateQuestionsRequest, GenerateQuestionsResponse
from services.servicekit.db import is_transient
from services.servicekit.idempotency import Claim, ClaimState
from services.servicekit.problems import ErrorMap, ProblemOf, problem_response

log = structlog.get_logger(__name__)

EVENT_STREAM = "text/event-stream"
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies must pass each event on as it comes
]
# A finaliser whose database is away for a moment tries again, this many times.
RECORD_ATTEMPTS = 5
# How long the service waits at shutdown for the streams to end and be recorded.
DRAIN_SECONDS = 20.0


def wants_stream(accept: str | None) -> bool:
    return accept is not None and EVENT_STREAM in accept.lower()


def event_frame(event: str, data: bytes | str) -> bytes:
    """One server-sent event; `data` is one line of JSON."""
    text = data.decode() if isinstance(data, bytes) else data
    return f"event: {event}\ndata: {text}\n\n".encode()


def question_frame(index: int, text: str) -> bytes:
    return event_frame("question", json.dumps({"index": index, "text": text}))


def done_frame(answer: GenerateQuestionsResponse) -> bytes:
    return event_frame("done", answer.model_dump_json(by_alias=True))


class Ending(StrEnum):
    """What ended a stream (kept with its generation row)."""

    COMPLETED = "completed"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    TIMEOUT = "timeout"
    STOPPED = "stopped"  # the service is shutting down


@dataclass
class Generation:
    """One streamed generation: what it asked for and what it holds until it is finalised."""

    company_id: UUID
    request: GenerateQuestionsRequest
    key: str | None
    claim: Claim | None
    reservation: Reservation | None
    started: float = field(default_factory=time.monotonic)
    delivered: list[str] = field(default_factory=list)
    calls: CallLog = field(default_factory=list)


class QuestionStreams:
    """Opens streams, finalises them, and waits for them at shutdown."""

    def __init__(self, generator: QuestionGenerator, errors: ErrorMap) -> None:
        self.generator = generator
        self.errors = errors
        self._flows: set[asyncio.Task[None]] = set()
        self._finalising: set[asyncio.Task[GenerateQuestionsResponse | None]] = set()

    async def open(
        self, company_id: UUID, request: GenerateQuestionsRequest, key: str | None
    ) -> Response:
        """The stream, or a refusal raised before anything is sent (402, 409, 422...)."""
        replay = self.generator.replay
        claim = None
        if key is not None:
            claim = await replay.claim(company_id, key, request)
            if claim.state is ClaimState.REPLAY:
                return recorded_stream(replay.replayed(claim))
        try:
            reservation = await self.generator.reserve(company_id, request)
        except BaseException:
            if claim is not None and key is not None:
                await replay.release(company_id, key, claim)
            raise
        return GenerationStream(self, Generation(company_id, request, key, claim, reservation))

    def track(self, flow: asyncio.Task[None]) -> None:
        self._flows.add(flow)
        flow.add_done_callback(self._flows.discard)

    async def finalise(
        self, generation: Generation, ending: Ending
    ) -> GenerateQuestionsResponse | None:
        """Record what was delivered, once; in a task the caller's cancellation cannot stop."""
        task = asyncio.create_task(self._record(generation, ending), name="stream-finaliser")
        self._finalising.add(task)
        task.add_done_callback(self._finalising.discard)
        return await asyncio.shield(task)

    async def drain(self, timeout: float = DRAIN_SECONDS) -> None:
        """At shutdown: every stream still running ends now, and is recorded before the
        pool closes (uvicorn has let them run for its graceful timeout already)."""
        for flow in list(self._flows):
            flow.cancel()
        deadline = time.monotonic() + timeout
        while self._flows or self._finalising:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.error("streams not recorded at shutdown", count=len(self._finalising))
                return
            await asyncio.wait({*self._flows, *self._finalising}, timeout=remaining)

    async def _record(
        self, generation: Generation, ending: Ending
    ) -> GenerateQuestionsResponse | None:
        delivered = list(generation.delivered)
        QUESTION_STREAMS.labels(ending.value, str(bool(delivered)).lower()).inc()
        if not delivered:
            LLM_CALLS.labels(self.generator.writer.model, f"stream_{ending.value}").inc()
            await self.generator.record_unbilled(generation.company_id, generation.calls)
            await self._give_back(generation)
            return None
        answer = delivered_answer(generation, delivered, self.generator.writer.model)
        for attempt in range(RECORD_ATTEMPTS):
            try:
                response = await self._write(generation, answer, ending)
            except Exception as exc:
                if not is_transient(exc) or attempt == RECORD_ATTEMPTS - 1:
                    log.exception(
                        "a streamed generation could not be recorded; its reservation expires",
                        company_id=str(generation.company_id),
                        questions=len(delivered),
                    )
                    # Nothing billed them, yet the provider will charge for them.
                    await self.generator.record_unbilled(generation.company_id, generation.calls)
                    return None
                await asyncio.sleep(0.2 * 2**attempt)
            else:
                model = self.generator.writer.model
                # Labelled by the configured model, as the JSON call's: each "ok" is one bill.
                LLM_CALLS.labels(model, "ok").inc()
                LLM_TOKENS.labels(model, "prompt").inc(answer.prompt_tokens)
                LLM_TOKENS.labels(model, "completion").inc(answer.completion_tokens)
                QUESTIONS_GENERATED.labels(model).inc(len(delivered))
                return response
        return None  # unreachable

    async def _write(
        self, generation: Generation, answer: Answer, ending: Ending
    ) -> GenerateQuestionsResponse:
        pool: asyncpg.Pool = self.generator.pool
        async with pool.acquire() as conn, conn.transaction():
            response = await self.generator.record(
                conn,
                generation.company_id,
                generation.request,
                answer,
                generation.reservation,
                calls=generation.calls,
                stream_end=ending.value,
            )
            if generation.claim is not None and generation.key is not None:
                # `ClaimLost` (a retry took a stalled stream's key over) rolls this back.
                await self.generator.replay.complete(
                    conn, generation.company_id, generation.key, generation.claim, response
                )
        return response

    async def _give_back(self, generation: Generation) -> None:
        if generation.reservation is not None:
            await self.generator.release(generation.reservation)
        if generation.claim is not None and generation.key is not None:
            await self.generator.replay.release(
                generation.company_id, generation.key, generation.claim
            )


def delivered_answer(generation: Generation, delivered: list[str], model: str) -> Answer:
    """The answer billed: the questions delivered, with the tokens of the call they came
    from (the provider's figures, or counted from the prompt and the text received)."""
    call = generation.calls[-1] if generation.calls else None
    tokens = call.tokens if call is not None else Tokens(prompt=1, completion=1)
    return Answer(questions=delivered, tokens=tokens, model=call.model if call else model)


def recorded_stream(answer: GenerateQuestionsResponse) -> Response:
    """A stream already ended, replayed: its recorded questions, then `done`."""
    frames = [question_frame(index, q.text) for index, q in enumerate(answer.questions)]
    return Response(b"".join([*frames, done_frame(answer)]), media_type=EVENT_STREAM)


async def _client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class GenerationStream(Response):
    """The `text/event-stream` answer of one generation (ASGI)."""

    media_type = EVENT_STREAM

    def __init__(self, streams: QuestionStreams, generation: Generation) -> None:
        super().__init__(media_type=EVENT_STREAM)
        self._streams = streams
        self._generation = generation
        self._client_left = False
        self._head_sent = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        flow = asyncio.create_task(self._flow(scope, receive, send), name="question-stream")
        self._streams.track(flow)
        gone = asyncio.create_task(_client_gone(receive), name="question-stream-client")
        try:
            await asyncio.wait((flow, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            # The client left, or the service is stopping: the flow stops where it is.
            gone.cancel()
            if not flow.done():
                self._client_left = gone.done() and not gone.cancelled()
                flow.cancel()
            # The flow ends the response, and its finaliser is tracked apart: a flow
            # stopped again while it records (the client left then) ends here.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(flow)

    async def _flow(self, scope: Scope, receive: Receive, send: Send) -> None:
        generation = self._generation
        request = generation.request
        writer = self._streams.generator.writer

        async def deliver(question: str) -> None:
            # A disconnection the server has already seen is seen here before writing.
            await asyncio.sleep(0)
            frame = question_frame(len(generation.delivered), question)
            if not self._head_sent:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS}
                )
                self._head_sent = True
                FIRST_QUESTION.observe(time.monotonic() - generation.started)
            await send({"type": "http.response.body", "body": frame, "more_body": True})
            generation.delivered.append(question)

        error: Exception | None = None
        try:
            await writer.stream(
                request.job_description, request.number_of_questions, deliver, generation.calls
            )
            ending = Ending.COMPLETED
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # handled here: the stream ends as any other
            ending = Ending.DISCONNECTED if self._client_left else Ending.STOPPED
        except Exception as exc:
            error = exc
            ending = Ending.TIMEOUT if isinstance(exc, LlmTimeout) else Ending.FAILED
        recorded = await self._streams.finalise(generation, ending)
        if ending is Ending.DISCONNECTED:
            return
        if error is None and ending is not Ending.COMPLETED:
            error = LlmUnavailable("the service is stopping; retry in a moment")
        elif error is None and recorded is None:  # answered, but it could not be recorded
            error = LlmUnavailable("the generation could not be recorded; retry in a moment")
        if not self._head_sent:  # nothing was sent: the usual problem, with its status
            response = self._problem(error, recorded)
            await response(scope, receive, send)
            return
        if ending is Ending.COMPLETED and recorded is not None:
            last = done_frame(recorded)
        else:
            last = event_frame("error", bytes(self._problem(error, recorded).body))
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": last, "more_body": False})

    def _problem(
        self, error: Exception | None, recorded: GenerateQuestionsResponse | None
    ) -> Response:
        """The problem that ends the stream; once questions were delivered, it says which
        generation billed them."""
        if error is None:
            error = LlmUnavailable("the generation did not finish; retry in a moment")
        problem = _problem_of(self._streams.errors, error)
        if problem is None:
            log.error("streamed generation failed", error_type=type(error).__name__, exc_info=error)
            return problem_response(500, "internal error; the generation was not completed")
        if recorded is None:
            return problem.response(error)
        base = json.loads(bytes(problem.response(error).body))
        members: dict[str, Any] = {
            key: value
            for key, value in base.items()
            if key not in ("type", "title", "status", "detail")
        }
        return problem_response(
            problem.status,
            f"{error}; the {recorded.question_count} questions delivered are billed "
            f"(generation {recorded.generation_id})",
            generationId=str(recorded.generation_id),
            questionCount=recorded.question_count,
            **members,
        )


def _problem_of(errors: ErrorMap, error: Exception) -> ProblemOf[Any] | None:
    for kind in type(error).__mro__:
        if kind in errors:
            return errors[kind]
    return None
