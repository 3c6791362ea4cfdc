"""`make demo`: play the original story against a running stack and say what happened.

A recruiter generates questions for a draft (the front end sends the draft's
UUID as `jobId`), billing records the draft's usage at once, the recruiter
saves the job, and billing moves the usage onto it. Then a streamed generation
arrives question by question, and one the recruiter leaves after three
questions is billed for those three. Last, what the operator sees: the demo
company's margin (revenue against the provider's cost of its LLM calls).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from services.servicekit.auth import issue_token
from services.servicekit.settings import ServiceSettings

QUESTIONS_URL = os.environ.get("QUESTION_GEN_URL", "http://127.0.0.1:8001")
JOBS_URL = os.environ.get("JOBS_URL", "http://127.0.0.1:8002")
BILLING_URL = os.environ.get("BILLING_URL", "http://127.0.0.1:8003")

DESCRIPTION = (
    "Senior backend engineer. You will design event-driven services in Python, "
    "own PostgreSQL schemas and RabbitMQ topologies, and keep billing exact."
)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)
    raise SystemExit(f"gave up waiting for {what} after {timeout:.0f}s")


def usage(client: httpx.Client, headers: dict[str, str], **filters: str) -> list[dict[str, Any]]:
    response = client.get(f"{BILLING_URL}/api/billing/usage", params=filters, headers=headers)
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def stream_questions(
    client: httpx.Client, headers: dict[str, str], body: dict[str, Any], *, leave_after: int = 0
) -> dict[str, Any] | None:
    """Print each question as it arrives; the `done` object (None when we left early)."""
    started = time.monotonic()
    received = 0
    with client.stream(
        "POST",
        f"{QUESTIONS_URL}/api/ai/generate-questions",
        json=body,
        headers={**headers, "Accept": "text/event-stream"},
    ) as response:
        response.raise_for_status()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:])
                if event == "question":
                    received += 1
                    elapsed = time.monotonic() - started
                    print(f"     {elapsed:5.2f}s  {data['index'] + 1}. {data['text']}")
                    if received == leave_after:
                        print(f"     (the recruiter closes the page after {received} questions)")
                        return None
                elif event == "done":
                    done: dict[str, Any] = data
                    return done
                else:
                    raise SystemExit(f"the stream failed: {data.get('detail')}")
    return None


def streamed_story(client: httpx.Client, headers: dict[str, str]) -> None:
    draft = str(uuid.uuid4())
    body = {"draftJobId": draft, "jobDescription": DESCRIPTION, "numberOfQuestions": 10}
    print("\n5. Streamed (Accept: text/event-stream): each question as the model writes it.")
    done = stream_questions(client, headers, body)
    assert done is not None
    print(f"   done: {done['questionCount']} questions, generation {done['generationId']}.")
    rows = wait_for("the streamed usage", lambda: usage(client, headers, draftJobId=draft))
    print(f"   Billed {rows[0]['questionCount']} questions, ${rows[0]['cost']}.")

    left = str(uuid.uuid4())
    print("\n6. A stream the recruiter leaves early:")
    stream_questions(client, headers, {**body, "draftJobId": left}, leave_after=3)
    rows = wait_for("the interrupted usage", lambda: usage(client, headers, draftJobId=left))
    print(
        f"   Billed what was delivered: {rows[0]['questionCount']} questions, "
        f"${rows[0]['cost']} (the call to the LLM stopped with the page)."
    )


def company_margin(
    client: httpx.Client, headers: dict[str, str], company: uuid.UUID, day: str
) -> dict[str, Any] | None:
    """The company's group in the day's margin by company, paging to it as an operator."""
    params: dict[str, str] = {"from": day, "to": day, "groupBy": "company", "limit": "1000"}
    while True:
        response = client.get(
            f"{BILLING_URL}/api/billing/admin/margin", params=params, headers=headers
        )
        response.raise_for_status()
        page = response.json()
        for group in page["groups"]:
            if group["group"] == str(company):
                found: dict[str, Any] = {**group, "currency": page["currency"]}
                return found
        if page["nextCursor"] is None:
            return None
        params = {**params, "cursor": page["nextCursor"]}


def describe_margin(margin: dict[str, Any] | None) -> str:
    if margin is None:
        return "nothing recorded for it today."
    text = f"revenue {margin['currency']} {margin['revenue']} over {margin['calls']} LLM call(s)"
    if margin["calls"] == 0:
        revenue = f"revenue {margin['currency']} {margin['revenue']}"
        return f"{revenue}; no LLM call recorded yet, so no provider cost and no margin."
    if margin["providerCost"] is None:
        return (
            f"{text}; provider cost not known yet (no priced call recorded: "
            f"{margin['unpricedCalls']} unpriced), so no margin."
        )
    percent = "" if margin["marginPercent"] is None else f" ({margin['marginPercent']}%)"
    return (
        f"{text}: provider cost {margin['providerCost']} "
        f"({margin['unbilledProviderCost']} of it not billed), margin {margin['margin']}{percent}."
    )


def main() -> int:
    company = uuid.uuid4()
    secret = ServiceSettings().auth_jwt_secret.get_secret_value()
    headers = {"Authorization": f"Bearer {issue_token(secret, company, user='demo@example.com')}"}
    operator = issue_token(
        secret, uuid.uuid4(), user="operator@example.com", roles=["platform:admin"]
    )
    operator_headers = {"Authorization": f"Bearer {operator}"}
    draft = str(uuid.uuid4())

    with httpx.Client(timeout=60) as client:
        for url in (QUESTIONS_URL, JOBS_URL, BILLING_URL):
            try:
                client.get(f"{url}/readyz").raise_for_status()
            except httpx.HTTPError as exc:
                print(f"{url} is not ready ({exc}); start the stack with `make dev` or `make up`.")
                return 1

        print(f"Company {company}, a recruiter writing a job posting (draft {draft}).\n")

        generated = client.post(
            f"{QUESTIONS_URL}/api/ai/generate-questions",
            json={"jobId": draft, "jobDescription": DESCRIPTION, "numberOfQuestions": 10},
            headers=headers,
        )
        generated.raise_for_status()
        generation = generated.json()
        print(
            f"1. Generated {generation['questionCount']} questions with model "
            f"{generation['model']} (generation {generation['generationId']}), e.g.:"
        )
        print(f"     {generation['questions'][0]['text']}")

        rows = wait_for("the draft's usage", lambda: usage(client, headers, draftJobId=draft))
        row = rows[0]
        print(
            f"2. Billed at once, before any job exists: {row['questionCount']} questions, "
            f"cost ${row['cost']}, held as draft {row['draftJobId']}, no job yet."
        )

        saved = client.post(
            f"{JOBS_URL}/api/jobs",
            json={
                "title": "Senior backend engineer",
                "description": DESCRIPTION,
                "draftJobId": draft,
            },
            headers=headers,
        )
        saved.raise_for_status()
        job = saved.json()
        print(f"3. Job saved: {job['id']} (made from draft {job['draftJobId']}).")

        moved = wait_for("the usage to move", lambda: usage(client, headers, jobId=job["id"]))
        total = sum((Decimal(item["cost"]) for item in moved), Decimal("0"))
        print(
            f"4. Usage moved onto the job: {len(moved)} row(s), ${total} now on job {job['id']};"
            f" {len(usage(client, headers, draftJobId=draft))} left under the draft."
        )
        streamed_story(client, headers)

        today = datetime.now(UTC).date().isoformat()
        margin = company_margin(client, operator_headers, company, today)
        print(f"\n7. The operator's margin on this company today: {describe_margin(margin)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
