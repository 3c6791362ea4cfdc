"""The cost of goods over the real broker and HTTP: calls kept once, the margin, re-pricing,
the price book's API, and no company ever seeing a provider cost."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx
import pytest

from services.billing.ledger.messages import DETAIL, REASON
from tests.integration.billing.conftest import record
from tests.support.auth import bearer
from tests.support.broker import drain, publish_events, publish_raw, queue_depth
from tests.support.events import call_of, generated, llm_call
from tests.support.paging import every_page
from tests.support.stack import Stack
from tests.support.waiting import eventually

DAY = datetime(2026, 3, 10, 12, tzinfo=UTC)
THE_DAY = {"from": "2026-03-10", "to": "2026-03-10"}
OPERATOR = bearer(uuid.uuid4(), user="operator@example.com", roles=["platform:admin"])
PRICE = "/api/billing/admin/models/{model}/price"
PRICES = "/api/billing/admin/models/prices"
MARGIN = "/api/billing/admin/margin"
# Fields a company-facing answer never carries (a company's own `profitMarginPercent` is not one).
COST_FIELDS = {
    "providerCost",
    "unbilledProviderCost",
    "margin",
    "marginPercent",
    "inputPer1M",
    "cachedInputPer1M",
    "outputPer1M",
    "modelPriceId",
}
COST_OF_GOODS = re.compile(r"\b(" + "|".join(sorted(COST_FIELDS - {"margin"})) + r")\b")


async def margin(stack: Stack, **params: str) -> dict[str, Any]:
    response = await stack.billing.get(MARGIN, params=params, headers=OPERATOR)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def repriced(stack: Stack, model: str) -> list[dict[str, Any]]:
    """The model's versions, once every re-pricing of theirs has finished."""

    async def versions() -> list[dict[str, Any]]:
        response = await stack.billing.get(PRICES, params={"model": model}, headers=OPERATOR)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["prices"]
        return found

    return await eventually(
        versions, until=lambda found: all(v["repricing"]["done"] for v in found), timeout=30
    )


def group(body: dict[str, Any], key: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [g for g in body["groups"] if g["group"] == key]
    assert len(found) == 1, body
    return found[0]


async def test_calls_through_the_broker_are_kept_once_and_the_margin_adds_them_up(
    billing: Stack, company: UUID
) -> None:
    generation = generated(company, at=DAY, model="gpt-4o-2024-08-06")
    billed = call_of(
        generation,
        prompt_tokens=1000,
        cached_prompt_tokens=200,
        completion_tokens=500,
        reasoning_tokens=100,
    )
    timed_out = llm_call(company, outcome="timeout", at=DAY)  # 100 in, 200 out
    unknown = llm_call(company, outcome="failed", model="acme-llm-1", at=DAY)
    other = uuid.uuid4()
    elsewhere = generated(other, at=DAY, model="gpt-4o-mini")
    events = [generation, billed, timed_out, unknown, elsewhere, call_of(elsewhere)]
    await publish_events(billing.topology, *events, times=2)  # every one delivered twice
    await record(billing, *events)
    await eventually(
        lambda: queue_depth(billing.topology.billing_queue_name), until=lambda n: n == 0
    )

    rows = await billing.fetch(billing.dbs.billing, "SELECT count(*) AS n FROM llm_calls")
    assert rows[0]["n"] == 4

    by_company = await margin(billing, groupBy="company", **THE_DAY)
    assert by_company["currency"] == "USD"
    assert by_company["groupBy"] == "company"
    assert (by_company["from"], by_company["to"]) == ("2026-03-10", "2026-03-10")
    assert [g["group"] for g in by_company["groups"]] == sorted([str(company), str(other)])
    # Shipped gpt-4o: 2.50 / 1.25 / 10.00 per 1M tokens.
    # billed: 800 * 2.50 + 200 * 1.25 + 500 * 10.00 = 7250; timed out: 100 * 2.50 + 200 * 10 = 2250.
    assert group(by_company, str(company)) == {
        "group": str(company),
        "revenue": "0.1000",
        "providerCost": "0.00950000",
        "unbilledProviderCost": "0.00225000",
        "margin": "0.09050000",
        "marginPercent": "90.50",
        "calls": 3,
        "unpricedCalls": 1,
    }
    assert by_company["nextCursor"] is None

    by_model = await margin(billing, groupBy="model", **THE_DAY)
    assert [g["group"] for g in by_model["groups"]] == ["acme-llm-1", "gpt-4o", "gpt-4o-mini"]
    assert group(by_model, "acme-llm-1") == {
        "group": "acme-llm-1",
        "revenue": "0.0000",
        "providerCost": None,  # only unpriced calls: not known, never 0
        "unbilledProviderCost": None,
        "margin": None,
        "marginPercent": None,
        "calls": 1,
        "unpricedCalls": 1,
    }
    # gpt-4o-mini: 100 * 0.15 + 200 * 0.60 = 135 per million.
    assert group(by_model, "gpt-4o-mini")["providerCost"] == "0.00013500"

    by_day = await margin(billing, groupBy="day", **{"from": "2026-03-01", "to": "2026-03-31"})
    assert by_day["groups"] == [
        {
            "group": "2026-03-10",
            "revenue": "0.2000",
            "providerCost": "0.00963500",
            "unbilledProviderCost": "0.00225000",
            "margin": "0.19036500",
            "marginPercent": "95.18",
            "calls": 4,
            "unpricedCalls": 1,
        }
    ]
    # The whole month from its rollup: the same figures as its days.
    month = await margin(billing, groupBy="company", **{"from": "2026-03-01", "to": "2026-03-31"})
    assert month["groups"] == by_company["groups"]


async def test_a_price_for_the_past_reprices_what_it_covers_and_the_margin_follows(
    billing: Stack, company: UUID
) -> None:
    earlier = llm_call(company, at=DAY - timedelta(hours=2))
    covered = llm_call(company, at=DAY, outcome="cancelled")
    generation = generated(company, at=DAY)
    await record(billing, earlier, covered, generation, call_of(generation))
    before = group(await margin(billing, groupBy="company", **THE_DAY), str(company))
    assert before["providerCost"] == "0.00675000"  # three calls of 100 in, 200 out

    body = {
        "inputPer1M": "1.0000",
        "cachedInputPer1M": "0.5000",
        "outputPer1M": "4.0000",
        "effectiveFrom": (DAY - timedelta(hours=1)).isoformat(),
    }
    headers = {**OPERATOR, "Idempotency-Key": "gpt-4o-correction-1"}
    first = await billing.billing.put(PRICE.format(model="gpt-4o"), json=body, headers=headers)
    again = await billing.billing.put(PRICE.format(model="gpt-4o"), json=body, headers=headers)
    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json()
    assert first.json()["createdBy"] == "operator@example.com"
    reused = await billing.billing.put(
        PRICE.format(model="gpt-4o"), json={**body, "outputPer1M": "5.0000"}, headers=headers
    )
    assert reused.status_code == 422

    versions = await repriced(billing, "gpt-4o")
    mine = [v for v in versions if v["modelPriceId"] == first.json()["modelPriceId"]]
    assert len(mine) == 1  # one version for the key, however often it was sent
    assert mine[0]["repricing"] == {"done": True, "callsScanned": 2, "callsRepriced": 2}
    # 100 * 1.00 + 200 * 4.00 = 900 per million each, for the two calls it covers.
    after = group(await margin(billing, groupBy="company", **THE_DAY), str(company))
    assert after["providerCost"] == "0.00405000"
    assert after["unbilledProviderCost"] == "0.00090000"
    assert after["margin"] == "0.09595000"
    rows = await billing.fetch(
        billing.dbs.billing,
        "SELECT provider_cost FROM llm_calls WHERE event_id = $1",
        earlier.event_id,
    )
    assert rows[0]["provider_cost"] == Decimal("0.00225000")  # before effectiveFrom: untouched


async def test_the_shipped_prices_are_the_first_versions_with_their_source(
    billing: Stack,
) -> None:
    pages = await every_page(
        lambda params: _json(
            billing.billing.get(PRICES, params={"limit": 5, **params}, headers=OPERATOR)
        ),
        "prices",
    )
    versions = [v for page in pages for v in page]
    by_model = {v["model"]: v for v in versions}
    assert len(by_model) == len(versions)  # one each, none twice
    gpt = by_model["gpt-4o"]
    assert gpt["inputPer1M"] == "2.5000"
    assert gpt["cachedInputPer1M"] == "1.2500"
    assert gpt["outputPer1M"] == "10.0000"
    assert gpt["effectiveFrom"].startswith("1970-01-01")
    assert gpt["source"].startswith("https://")
    assert date.fromisoformat(gpt["readOn"]) <= datetime.now(UTC).date()
    assert gpt["createdBy"] == "shipped"
    assert {"gpt-4o-mini", "gpt-4.1", "o3", "o4-mini", "gpt-5"} <= set(by_model)


async def _json(request: Any) -> dict[str, Any]:
    response: httpx.Response = await request
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_margin_pages_through_every_company_once(billing: Stack) -> None:
    """A range of whole months and days around them: each company once, summed whole."""
    companies = [uuid.uuid4() for _ in range(5)]
    days = ["2026-02-27", "2026-03-01", "2026-03-31", "2026-04-01", "2026-04-20"]
    events = [
        generated(c, at=datetime.fromisoformat(f"{day}T12:00:00+00:00"))
        for c, day in zip(companies, days, strict=True)
    ]
    twice = generated(companies[1], at=datetime(2026, 4, 2, tzinfo=UTC))  # a month and a day
    events.append(twice)
    await record(billing, *events, *(call_of(e) for e in events))
    span = {"from": "2026-02-27", "to": "2026-04-20"}
    pages = await every_page(
        lambda params: _json(
            billing.billing.get(MARGIN, params={**span, "limit": 2, **params}, headers=OPERATOR)
        ),
        "groups",
    )
    assert [len(page) for page in pages] == [2, 2, 1]
    groups = {g["group"]: g for page in pages for g in page}
    assert list(groups) == sorted(str(c) for c in companies)
    assert groups[str(companies[1])]["calls"] == 2
    assert groups[str(companies[1])]["revenue"] == "0.2000"
    inside = await margin(billing, **{"from": "2026-02-28", "to": "2026-04-19"})
    assert [g["group"] for g in inside["groups"]] == sorted(str(c) for c in companies[1:4])

    cursor = (await margin(billing, **span, limit="2"))["nextCursor"]
    other_query = await billing.billing.get(
        MARGIN, params={**span, "to": "2026-04-21", "cursor": cursor}, headers=OPERATOR
    )
    assert other_query.status_code == 422
    assert other_query.json()["errors"][0]["field"] == "cursor"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputPer1M": "-1.0000"}, "inputPer1M"),
        ({"cachedInputPer1M": "0.12345"}, "cachedInputPer1M"),
        ({"outputPer1M": 0.30000000000000004}, "outputPer1M"),
        ({"outputPer1M": "1000000"}, "outputPer1M"),
        ({"effectiveFrom": "2026-03-10"}, "effectiveFrom"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_a_bad_price_is_refused_naming_the_field_and_adds_nothing(
    billing: Stack, body: dict[str, Any], field: str
) -> None:
    valid = {
        "inputPer1M": "1.0000",
        "cachedInputPer1M": "0.5000",
        "outputPer1M": "4.0000",
        "effectiveFrom": "2026-03-10T00:00:00Z",
    }
    before = await billing.fetch(billing.dbs.billing, "SELECT count(*) AS n FROM model_prices")
    response = await billing.billing.put(
        PRICE.format(model="gpt-4o"), json={**valid, **body}, headers=OPERATOR
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [error["field"] for error in response.json()["errors"]]
    after = await billing.fetch(billing.dbs.billing, "SELECT count(*) AS n FROM model_prices")
    assert after == before


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-03-11", "to": "2026-03-10"}, "from"),
        ({"from": "2025-01-01", "to": "2026-03-10"}, "to"),
        ({"from": "2026-03-10", "to": "tomorrow"}, "to"),
        ({"from": "2026-03-10", "to": "2026-03-10", "groupBy": "job"}, "groupBy"),
        ({"from": "2026-03-10", "to": "2026-03-10", "cursor": "bm90IGEgY3Vyc29y"}, "cursor"),
        ({"to": "2026-03-10"}, "from"),
    ],
)
async def test_a_bad_margin_query_is_refused_naming_the_field(
    billing: Stack, params: dict[str, str], field: str
) -> None:
    response = await billing.billing.get(MARGIN, params=params, headers=OPERATOR)
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]


async def test_a_call_that_cannot_be_true_is_dead_lettered_as_poison(
    billing: Stack, company: UUID
) -> None:
    wire = json.loads(llm_call(company).to_json())
    bad = {**wire, "cachedPromptTokens": wire["promptTokens"] + 1}
    await publish_raw(
        billing.topology,
        json.dumps(bad).encode(),
        routing_key="questions.llm_call.v1",
        message_id=bad["eventId"],
    )
    await eventually(lambda: queue_depth(billing.topology.billing_dlq_name), until=lambda n: n == 1)
    [dead] = await drain(billing.topology.billing_dlq_name)
    assert (dead.headers or {})[REASON] == "poison"
    assert "cachedPromptTokens" in str((dead.headers or {}).get(DETAIL))
    rows = await billing.fetch(billing.dbs.billing, "SELECT count(*) AS n FROM llm_calls")
    assert rows[0]["n"] == 0


# ---------------------------------------------------------------- tenancy

SAMPLE_PATH = {
    "companyId": str(uuid.uuid4()),
    "period": "2025-01",
    "model": "gpt-4o",
    "grantId": str(uuid.uuid4()),
}
SAMPLE_QUERY = {"from": "2026-03-01", "to": "2026-03-31"}


def admin_routes(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if "/admin/" in path
        for method in operations
    ]


async def test_a_company_token_is_refused_on_every_admin_route(
    billing: Stack, company: UUID
) -> None:
    routes = admin_routes(billing.apps["billing"].openapi())
    assert ("PUT", PRICE) in routes
    assert ("GET", PRICES) in routes
    assert ("GET", MARGIN) in routes
    for roles in ((), ("billing:admin",)):
        for method, path in routes:
            url = re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PATH[m.group(1)], path)
            response = await billing.billing.request(
                method,
                url,
                params=SAMPLE_QUERY,
                json={},
                headers=bearer(company, roles=roles),
            )
            assert response.status_code == 403, (method, path, roles, response.text)
            assert not COST_OF_GOODS.search(response.text)


def schemas_of(document: dict[str, Any], paths: list[str]) -> set[str]:
    """Every schema the operations of `paths` refer to, directly or through others."""
    found: set[str] = set()
    pending = [document["paths"][path] for path in paths]
    while pending:
        text = json.dumps(pending.pop())
        for name in re.findall(r'"#/components/schemas/([^"]+)"', text):
            if name not in found:
                found.add(name)
                pending.append(document["components"]["schemas"][name])
    return found


async def test_no_company_facing_answer_mentions_provider_cost_or_margin(
    billing: Stack, company: UUID
) -> None:
    document = billing.apps["billing"].openapi()
    facing = [path for path in document["paths"] if "/admin/" not in path]
    schemas = schemas_of(document, facing)
    assert "Usage" in schemas  # the walk reaches the company's answers
    for name in schemas:
        fields = set(document["components"]["schemas"][name].get("properties", {}))
        assert not fields & COST_FIELDS, name
    assert not COST_OF_GOODS.search(json.dumps({p: document["paths"][p] for p in facing}))

    generation = generated(company, at=DAY)
    await record(billing, generation, call_of(generation))
    own = bearer(company)
    for path, params in (
        ("/api/billing/usage", {}),
        ("/api/billing/summary", {}),
        ("/api/billing/usage.csv", {"from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}),
        ("/api/billing/statements/2026-03", {}),
        ("/billing", {}),
    ):
        response = await billing.billing.get(path, params=params, headers=own)
        assert response.status_code == 200, (path, response.text)
        assert not COST_OF_GOODS.search(response.text), path
        assert "provider" not in response.text.lower(), path
