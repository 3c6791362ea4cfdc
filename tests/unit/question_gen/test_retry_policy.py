"""How long the writer waits before retrying the LLM, and what it retries."""

from __future__ import annotations

import pytest

from services.question_gen.llm import RetryPolicy, is_retryable
from services.servicekit.retry_after import server_retry_after


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "20", "retry-after": "9"}, 0.02),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({"retry-after": "-4"}, None),
        ({"retry-after": "inf"}, None),
        ({}, None),
    ],
)
def test_the_servers_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert server_retry_after(headers) == seconds


def test_the_servers_delay_wins_over_the_backoff() -> None:
    assert RetryPolicy(max_retries=2).delay(0, 12.0) == 12.0


def test_the_backoff_doubles_with_jitter_up_to_a_ceiling() -> None:
    policy = RetryPolicy(max_retries=10, initial_delay=0.5, max_delay=8.0)
    for retries_taken, full in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        for _ in range(50):
            assert 0.75 * full <= policy.delay(retries_taken, None) <= full


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(408, True), (409, True), (429, True), (500, True), (503, True), (400, False), (401, False)],
)
def test_what_is_retried(status: int, retryable: bool) -> None:
    assert is_retryable(status) is retryable
