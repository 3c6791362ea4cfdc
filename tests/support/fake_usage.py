"""A fake of OpenAI's organization usage API (`/v1/organization/usage/completions`), on loopback.

It serves what a test reported to it (`report`, `add`) the way the provider does: one
bucket per UTC day of `[start_time, end_time)`, each with one result per model when
`group_by=model` (one result with `"model": null` otherwise), `limit` buckets a page
(default 7, at most 31, as the API), never more than `page_days`, `has_more` and an
opaque `next_page` token to pass back as `page`. It answers 401 as OpenAI does to a
wrong admin key, honours `project_ids`, and can be scripted: replies queued with
`enqueue` answer the next requests instead (a 429 with `Retry-After`, a 500, a
malformed page, a slow answer). It records every request (its query and headers).

It knows nothing of billing: only what the provider's API looks like on the wire.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.stack import served

ADMIN_KEY = "sk-admin-test-0123456789abcdef"
PROJECT = "proj_test"
PATH = "/v1/organization/usage/completions"
DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Usage:
    """What the provider counted for one project, day and model."""

    requests: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.requests + other.requests,
            self.input_tokens + other.input_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.output_tokens + other.output_tokens,
        )


@dataclass(frozen=True)
class Reply:
    """A scripted answer: status, body (bytes as is, anything else as JSON), headers, delay.

    `body=None` with status 200: after the delay, the usage as reported (a slow provider).
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def rate_limited(retry_after: str = "1") -> Reply:
    error = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
    return Reply(429, {"error": error}, {"retry-after": retry_after})


def slow(seconds: float) -> Reply:
    return Reply(delay=seconds)


@dataclass(frozen=True)
class Received:
    """A request the fake received: its query (every value of each name) and headers."""

    query: dict[str, list[str]]
    headers: dict[str, str]

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


def epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _token(start: int) -> str:
    return base64.b64encode(f"page_{start}".encode()).decode()


def _untoken(token: str) -> int | None:
    try:
        text = base64.b64decode(token.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(text[5:]) if text.startswith("page_") and text[5:].isdigit() else None


def _error(status: int, message: str, code: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return JSONResponse(body, status_code=status)


class FakeUsageApi:
    """The usage API as scripted; `url` is its base (`.../v1`), `requests` what it received."""

    def __init__(self, *, admin_key: str = ADMIN_KEY, page_days: int = 31) -> None:
        self.admin_key = admin_key
        self.page_days = page_days
        self.url = ""
        self._usage: dict[tuple[str, date, str], Usage] = {}
        self._queue: deque[Reply] = deque()
        self.requests: list[Received] = []
        self.app = Starlette(routes=[Route(PATH, self._answer, methods=["GET"])])

    # Scripting.

    def report(
        self,
        day: date,
        model: str,
        usage: Usage | None = None,
        *,
        project: str = PROJECT,
        **kw: int,
    ) -> None:
        """The provider counts exactly this for the project, day and model (replacing any)."""
        self._usage[(project, day, model)] = usage if usage is not None else Usage(**kw)

    def add(self, day: date, model: str, usage: Usage, *, project: str = PROJECT) -> None:
        key = (project, day, model)
        self._usage[key] = self._usage.get(key, Usage()) + usage

    def correct(self, day: date, model: str, **changes: int) -> None:
        """The provider corrects its figures of a day (as it may for the last few days)."""
        key = (PROJECT, day, model)
        self._usage[key] = replace(self._usage[key], **changes)

    def enqueue(self, *replies: Reply) -> None:
        self._queue.extend(replies)

    # Serving.

    async def _answer(self, request: Request) -> Response:
        query: dict[str, list[str]] = {}
        for name, value in request.query_params.multi_items():
            query.setdefault(name, []).append(value)
        received = Received(query, {k.lower(): v for k, v in request.headers.items()})
        self.requests.append(received)
        if self._queue:
            reply = self._queue.popleft()
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.status != 200 or reply.body is not None:
                content = (
                    reply.body if isinstance(reply.body, bytes) else JSONResponse(reply.body).body
                )
                return Response(
                    content, reply.status, headers=reply.headers, media_type="application/json"
                )
        if received.headers.get("authorization") != f"Bearer {self.admin_key}":
            return _error(
                401,
                "Incorrect API key provided: sk-adm*****. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_api_key",
            )
        return self._page(received)

    def _page(self, received: Received) -> Response:
        try:
            start = int(received.param("start_time") or "")
            end = int(received.param("end_time") or str(start + 7 * DAY_SECONDS))
            limit = int(received.param("limit") or "7")
        except ValueError:
            return _error(400, "start_time, end_time and limit are integers")
        if received.param("bucket_width") not in (None, "1d"):
            return _error(400, "this fake serves bucket_width=1d only")
        if not 1 <= limit <= 31 or start % DAY_SECONDS or end % DAY_SECONDS:
            return _error(400, "limit is 1 to 31; times are whole UTC days here")
        token = received.param("page")
        at = start if token is None else _untoken(token)
        if at is None or not start <= at < end:
            return _error(400, "invalid page")
        by_model = "model" in (received.query.get("group_by") or [])
        projects = set(received.query.get("project_ids") or []) or None
        count = min(limit, self.page_days, (end - at) // DAY_SECONDS)
        buckets = [self._bucket(at + n * DAY_SECONDS, by_model, projects) for n in range(count)]
        following = at + count * DAY_SECONDS
        more = following < end
        return JSONResponse(
            {
                "object": "page",
                "data": buckets,
                "has_more": more,
                "next_page": _token(following) if more else None,
            }
        )

    def _bucket(self, start: int, by_model: bool, projects: set[str] | None) -> dict[str, Any]:
        day = datetime.fromtimestamp(start, UTC).date()
        counted: dict[str | None, Usage] = {}
        for (project, on, model), usage in self._usage.items():
            if on == day and (projects is None or project in projects):
                key = model if by_model else None
                counted[key] = counted.get(key, Usage()) + usage
        results = [
            {
                "object": "organization.usage.completions.result",
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "input_cached_tokens": usage.cached_input_tokens,
                "input_audio_tokens": 0,
                "output_audio_tokens": 0,
                "num_model_requests": usage.requests,
                "project_id": None,
                "user_id": None,
                "api_key_id": None,
                "model": model,
                "batch": None,
                "service_tier": None,
            }
            for model, usage in sorted(counted.items(), key=lambda item: str(item[0]))
        ]
        return {
            "object": "bucket",
            "start_time": start,
            "end_time": start + DAY_SECONDS,
            "results": results,
        }


@asynccontextmanager
async def running_fake_usage(**options: Any) -> AsyncIterator[FakeUsageApi]:
    """The fake under uvicorn on a loopback port, in this event loop."""
    fake = FakeUsageApi(**options)
    async with served(fake.app) as base:
        fake.url = f"{base}/v1"
        yield fake


def days_before(today: date, count: int) -> list[date]:
    """The `count` days ending with `today`, oldest first."""
    return [today - timedelta(days=count - 1 - n) for n in range(count)]
