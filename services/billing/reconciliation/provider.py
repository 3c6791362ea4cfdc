"""The provider's side: OpenAI's organization usage API, read a page at a time.

`GET {OPENAI_ADMIN_BASE_URL}/organization/usage/completions` with `bucket_width=1d`,
`group_by=model` (and `project_ids` when `OPENAI_PROJECT_ID` is set), from the first
day's midnight UTC to the midnight after the last (exclusive), following `has_more`
and `next_page` until the last page. Each page is handed over as soon as it is read,
so a run holds one page, whatever its number of days.

What goes wrong is a `UsageUnavailable` with a reason fit for the run's record and the
logs (never the admin key, never the provider's body):

- 429 (with `Retry-After` or `retry-after-ms`), 5xx, a timeout, a connection that
  fails: tried again (tenacity), up to `attempts` times per page, waiting what the
  provider asks (at most a minute) or an exponential backoff;
- 401 and 403 (the admin key refused), any other 4xx, a page that is not what the
  API answers (`Malformed`): at once, no retry.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from services.billing.reconciliation.rules import Figures
from services.servicekit.retry_after import server_retry_after

USAGE_PATH = "organization/usage/completions"
DAY_SECONDS = 86_400
# The most buckets of 1 day the API gives in one page.
PAGE_DAYS = 31
# A `Retry-After` longer than this fails the run instead (the next run tries again).
MAX_RETRY_AFTER_SECONDS = 60.0
# An error code the provider names (`invalid_api_key`): written in a reason as is.
ERROR_CODE = re.compile(r"^[a-z0-9_.-]{1,64}$")


class UsageUnavailable(Exception):
    """The provider's usage could not be read; `reason` says why (no secret in it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Refused(UsageUnavailable):
    """401 or 403: the admin key is wrong or lacks the usage scope. Not retried."""


class Malformed(UsageUnavailable):
    """A page that is not what the usage API answers. Not retried."""


class Unanswered(UsageUnavailable):
    """Rate limited, failing, slow or unreachable: another attempt may work."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class UsageDay:
    """One UTC day as the provider reports it: figures by its own model names."""

    day: date
    models: tuple[tuple[str, Figures], ...]


class UsageReader(Protocol):
    """Where a run reads the provider's usage from."""

    def pages(self, first: date, last: date) -> AsyncIterator[list[UsageDay]]:
        """The days `[first, last]`, a page at a time, in the provider's order."""
        ...


# ---------------------------------------------------------------- the page, as the API answers

Count = Annotated[int, Field(ge=0, strict=True)]


class _Result(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    num_model_requests: Count
    input_tokens: Count
    input_cached_tokens: Count | None = None
    output_tokens: Count


class _Bucket(BaseModel):
    model_config = ConfigDict(extra="ignore")

    start_time: Annotated[int, Field(strict=True)]
    end_time: Annotated[int, Field(strict=True)]
    results: list[_Result]


class _Page(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data: list[_Bucket]
    has_more: Annotated[bool, Field(strict=True)]
    next_page: str | None = None


def epoch(day: date) -> int:
    """Midnight UTC of `day`, in Unix seconds."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def read_page(body: Any, first: date, last: date) -> tuple[list[UsageDay], str | None]:
    """A page's days (in its order) and the next page's token; `Malformed` if it is not one."""
    try:
        page = _Page.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the page"
        raise Malformed(f"malformed usage page: {where}: {error['msg']}") from None
    if page.has_more and not page.next_page:
        raise Malformed("malformed usage page: has_more without next_page")
    days = []
    for bucket in page.data:
        if bucket.start_time % DAY_SECONDS or bucket.end_time - bucket.start_time != DAY_SECONDS:
            raise Malformed(
                f"malformed usage page: a bucket of {bucket.start_time}..{bucket.end_time} "
                "is not one UTC day"
            )
        day = datetime.fromtimestamp(bucket.start_time, UTC).date()
        if not first <= day <= last:
            raise Malformed(f"malformed usage page: a bucket of {day} is outside the range asked")
        models = tuple(
            (
                result.model,
                Figures(
                    result.num_model_requests,
                    result.input_tokens,
                    result.input_cached_tokens or 0,
                    result.output_tokens,
                ),
            )
            for result in bucket.results
        )
        days.append(UsageDay(day, models))
    return days, page.next_page if page.has_more else None


# ---------------------------------------------------------------- the client


class OpenAiUsage:
    """The organization usage API of OpenAI (or a server that answers as it does)."""

    def __init__(
        self,
        *,
        base_url: str,
        admin_key: SecretStr,
        project_id: str | None = None,
        timeout_seconds: float = 30.0,
        attempts: int = 4,
        backoff_seconds: float = 1.0,
    ) -> None:
        self._base_url = base_url.rstrip("/") + "/"
        self._admin_key = admin_key
        self._project_id = project_id
        self._timeout = timeout_seconds
        self._attempts = attempts
        self._backoff = backoff_seconds

    async def pages(self, first: date, last: date) -> AsyncIterator[list[UsageDay]]:
        params: dict[str, Any] = {
            "start_time": epoch(first),
            "end_time": epoch(last + timedelta(days=1)),
            "bucket_width": "1d",
            "group_by": "model",
            "limit": PAGE_DAYS,
        }
        if self._project_id:
            params["project_ids"] = [self._project_id]
        # Most pages one range can take: one day each, and a few empty ones.
        most = (last - first).days + 1 + 8
        headers = {"Authorization": f"Bearer {self._admin_key.get_secret_value()}"}
        async with httpx.AsyncClient(
            base_url=self._base_url, headers=headers, timeout=self._timeout
        ) as client:
            token: str | None = None
            seen: set[str] = set()
            for _ in range(most):
                body = await self._get(client, {**params, "page": token} if token else params)
                days, token = read_page(body, first, last)
                del body  # one page in memory at a time: not this one while the next is read
                yield days
                del days
                if token is None:
                    return
                if token in seen:
                    raise Malformed("malformed usage page: next_page repeats an earlier page")
                seen.add(token)
            raise Malformed(f"malformed usage page: more than {most} pages for {most - 8} days")

    async def _get(self, client: httpx.AsyncClient, params: dict[str, Any]) -> Any:
        """One page, tried again while the provider is rate limited, failing or slow."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=retry_if_exception_type(Unanswered),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._get_once(client, params)
        except Unanswered as exc:
            raise Unanswered(f"{exc.reason} ({self._attempts} attempts)") from None
        raise AssertionError("unreachable: tenacity retries until an answer or an error")

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, Unanswered) and error.retry_after is not None:
            return error.retry_after
        return float(self._backoff * 2 ** (state.attempt_number - 1))

    async def _get_once(self, client: httpx.AsyncClient, params: dict[str, Any]) -> Any:
        try:
            response = await client.get(USAGE_PATH, params=params)
        except httpx.TimeoutException:
            raise Unanswered(f"the provider did not answer within {self._timeout:g} s") from None
        except httpx.TransportError as exc:
            raise Unanswered(f"the provider is unreachable ({type(exc).__name__})") from None
        status = response.status_code
        if status == 200:
            try:
                return response.json()
            except ValueError:
                raise Malformed("malformed usage page: the body is not JSON") from None
        code = _error_code(response)
        if status in (401, 403):
            raise Refused(f"the provider refused the admin key (HTTP {status}{code})")
        if status == 429:
            wait = server_retry_after(response.headers)
            if wait is not None and wait > MAX_RETRY_AFTER_SECONDS:
                raise UsageUnavailable(
                    f"rate limited by the provider (HTTP 429{code}): it asks to wait {wait:g} s, "
                    f"longer than a run waits ({MAX_RETRY_AFTER_SECONDS:g} s)"
                )
            raise Unanswered(f"rate limited by the provider (HTTP 429{code})", wait)
        if status >= 500:
            raise Unanswered(
                f"the provider failed (HTTP {status}{code})", server_retry_after(response.headers)
            )
        raise UsageUnavailable(f"the provider refused the request (HTTP {status}{code})")


def _error_code(response: httpx.Response) -> str:
    """`, code` when the provider's error names a code; never its message (it may quote
    part of the key)."""
    try:
        error = response.json().get("error")
        code = error.get("code") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        return ""
    return f", {code}" if isinstance(code, str) and ERROR_CODE.match(code) else ""
