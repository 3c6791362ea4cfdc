"""The delivery worker: POSTs due threshold webhooks, at least once, for 24 hours.

Each pass claims due deliveries (`FOR UPDATE SKIP LOCKED`, then a lease), so any
number of billing processes share the work without sending one twice at once.
A 2xx within the timeout delivers; anything else is an attempt recorded and
retried with backoff until the delivery's 24 hours are over. The timeout
bounds the whole attempt, the URL's check (its DNS lookup) included, so an
attempt always ends well inside its lease. An attempt is recorded only while
its worker still holds that lease: one that outlived it (another worker has
claimed the delivery since) records nothing, and never overwrites what the
other recorded. The URL is checked again before every attempt and the
connection goes to the address that passed, never to one resolved
afterwards. Redirects are not followed. The clock is a parameter: tests move
time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import structlog

from services.billing import metrics
from services.billing.webhooks import store
from services.billing.webhooks.rules import (
    SIGNATURE_HEADER,
    DeliveryPolicy,
    counted_outcome,
    next_attempt,
    sign,
)
from services.billing.webhooks.store import Attempt, Claimed
from services.billing.webhooks.urls import Resolver, UnsafeWebhookUrl, Vetted, resolve, vet_url

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
USER_AGENT = "question-billing-webhooks/1"
MAX_ERROR_LENGTH = 500


def utc_now() -> datetime:
    return datetime.now(UTC)


def pinned_request(vetted: Vetted, body: bytes, headers: dict[str, str]) -> httpx.Request:
    """The POST, addressed to the vetted address while naming the host (Host header, SNI)."""
    url = httpx.URL(vetted.target.url)
    extensions: dict[str, str] = {}
    if vetted.address is not None:
        headers = {**headers, "Host": url.netloc.decode("ascii")}
        url = url.copy_with(host=vetted.address)
        if vetted.target.scheme == "https":
            extensions["sni_hostname"] = vetted.target.host
    return httpx.Request("POST", url, content=body, headers=headers, extensions=extensions)


class WebhookDeliverer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        allowed_hosts: frozenset[str],
        policy: DeliveryPolicy | None = None,
        clock: Clock = utc_now,
        resolver: Resolver = resolve,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        batch_size: int = 20,
        poll_seconds: float = 1.0,
    ) -> None:
        self._pool = pool
        self._allowed_hosts = allowed_hosts
        self._policy = policy or DeliveryPolicy()
        self._clock = clock
        self._resolver = resolver
        self._rng = rng or random.Random()
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the vetted address is the peer
            timeout=self._policy.timeout_seconds,
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-deliveries")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._client.aclose()

    async def _run(self) -> None:
        while True:
            try:
                delivered = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook delivery pass failed, will retry", error=repr(exc))
                delivered = 0
            if delivered < self._batch_size:
                await asyncio.sleep(self._poll_seconds)

    async def deliver_due(self) -> int:
        """One pass: claim what is due now, attempt each, record each. How many were tried."""
        now = self._clock()
        lease_until = now + timedelta(seconds=self._policy.lease_seconds)
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await store.claim_due(conn, now, lease_until, self._batch_size)
        outcomes = await asyncio.gather(
            *(self._attempt(delivery) for delivery in claimed), return_exceptions=True
        )
        for delivery, outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, Exception):
                # Not recorded: the lease runs out and another pass tries it again.
                log.warning(
                    "webhook attempt not recorded",
                    event_id=str(delivery.event_id),
                    error=repr(outcome),
                )
        return len(claimed)

    async def _attempt(self, delivery: Claimed) -> None:
        attempted_at = self._clock()
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        if delivery.url is None or delivery.secret is None:
            outcome, error = "refused", "the company has no webhook URL any more"
        else:
            timeout = self._policy.timeout_seconds
            try:
                async with asyncio.timeout(timeout):
                    outcome, status_code, error = await self._call(
                        delivery.url, delivery, attempted_at
                    )
            except TimeoutError:
                outcome, error = "failed", f"TimeoutError: no answer within {timeout:g} s"
        attempt = Attempt(
            delivery_id=delivery.id,
            company_id=delivery.company_id,
            attempt=delivery.attempts + 1,
            attempted_at=attempted_at,
            url=delivery.url,
            status_code=status_code,
            error=error[:MAX_ERROR_LENGTH] if error else None,
            duration_ms=int((time.monotonic() - started) * 1000),
            outcome=outcome,
        )
        await self._record(delivery, attempt)

    async def _call(
        self, url: str, delivery: Claimed, at: datetime
    ) -> tuple[str, int | None, str | None]:
        """Check the URL, then POST: the outcome, the receiver's status code, the error."""
        try:
            vetted = await vet_url(url, self._allowed_hosts, self._resolver)
        except UnsafeWebhookUrl as exc:
            return "refused", None, f"webhookUrl refused: {exc}"
        status_code, error = await self._post(vetted, delivery, at)
        ok = status_code is not None and 200 <= status_code < 300
        return ("delivered" if ok else "failed"), status_code, error

    async def _post(
        self, vetted: Vetted, delivery: Claimed, at: datetime
    ) -> tuple[int | None, str | None]:
        assert delivery.secret is not None
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(delivery.secret, int(at.timestamp()), delivery.body),
        }
        request = pinned_request(vetted, delivery.body.encode(), headers)
        try:
            # The answer's body is never read: a receiver cannot make billing hold it.
            response = await self._client.send(request, stream=True)
            await response.aclose()
        except (httpx.HTTPError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"the receiver answered {response.status_code}"

    async def _record(self, delivery: Claimed, attempt: Attempt) -> None:
        if attempt.outcome == "delivered":
            status, next_at = "delivered", None
        elif delivery.url is None:
            status, next_at = "failed", None  # nowhere to deliver: the company removed it
        else:
            next_at = next_attempt(
                attempt.attempt, self._clock(), delivery.give_up_at, self._policy, self._rng
            )
            status = "pending" if next_at is not None else "failed"
        async with self._pool.acquire() as conn:
            recorded = await store.record_attempt(
                conn, attempt, status, next_at, lease_until=delivery.lease_until
            )
        if not recorded:
            log.warning(
                "webhook attempt outlived its lease; another worker has the delivery, "
                "nothing recorded",
                event_id=str(delivery.event_id),
                attempt=attempt.attempt,
                outcome=attempt.outcome,
            )
            return
        # Counted once recorded, so the metrics agree with the attempts the API lists.
        metrics.webhook_attempts(counted_outcome(attempt.outcome, status)).inc()
        if attempt.outcome != "refused":  # a refused URL got no request
            metrics.WEBHOOK_ATTEMPT_SECONDS.observe(attempt.duration_ms / 1000)
        log.info(
            "webhook attempt",
            event_id=str(delivery.event_id),
            attempt=attempt.attempt,
            outcome=attempt.outcome,
            status_code=attempt.status_code,
            delivery_status=status,
        )
