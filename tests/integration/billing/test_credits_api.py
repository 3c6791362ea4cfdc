"""Prepaid credits through the HTTP API: the operator's writes, the company's reads, bad input."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from tests.integration.billing.conftest import record
from tests.support.auth import bearer
from tests.support.events import generated
from tests.support.stack import Stack

OPERATOR = bearer(uuid.uuid4(), user="ops@example.com", roles=["platform:admin"])
AT = datetime(2026, 2, 10, 12, 0, tzinfo=UTC)


def grant_body(**fields: Any) -> dict[str, Any]:
    return {
        "amount": "5.0000",
        "kind": "purchased",
        "effectiveAt": "2026-01-01T00:00:00Z",
        "reason": "annual plan",
        **fields,
    }


def post_grant(stack: Stack, company: UUID, body: dict[str, Any], **headers: str) -> Any:
    return stack.billing.post(
        f"/api/billing/admin/companies/{company}/credits",
        json=body,
        headers={**OPERATOR, **headers},
    )


def put_mode(stack: Stack, company: UUID, body: dict[str, Any], **headers: str) -> Any:
    return stack.billing.put(
        f"/api/billing/admin/companies/{company}/credit-mode",
        json=body,
        headers={**OPERATOR, **headers},
    )


async def written(stack: Stack) -> dict[str, int]:
    rows = await stack.fetch(
        stack.dbs.billing,
        "SELECT (SELECT count(*) FROM credit_grants) AS grants,"
        " (SELECT count(*) FROM credit_entries) AS entries,"
        " (SELECT count(*) FROM credit_accounts) AS accounts,"
        " (SELECT count(*) FROM idempotency_keys) AS keys,"
        " (SELECT count(*) FROM outbox WHERE routing_key = 'billing.credits_changed.v1') AS events",
    )
    return dict(rows[0])


NOTHING = {"grants": 0, "entries": 0, "accounts": 0, "keys": 0, "events": 0}


async def test_an_operator_grants_credits_and_the_company_sees_them_drawn(
    billing: Stack, company: UUID
) -> None:
    response = await post_grant(
        billing, company, grant_body(priority=1), **{"Idempotency-Key": "grant-1"}
    )
    assert response.status_code == 201, response.text
    granted = response.json()
    assert granted["amount"] == granted["remaining"] == "5.0000"
    assert granted["priority"] == 1
    assert granted["kind"] == "purchased"
    assert granted["createdBy"] == "ops@example.com"
    assert granted["expiresAt"] is None
    replay = await post_grant(
        billing, company, grant_body(priority=1), **{"Idempotency-Key": "grant-1"}
    )
    assert replay.status_code == 201
    assert replay.json() == granted
    second = await post_grant(billing, company, grant_body(amount="1", kind="promotional"))
    assert second.status_code == 201
    assert second.json()["priority"] == 10

    mode = await put_mode(billing, company, {"mode": "credit_only", "lowBalanceThreshold": "2"})
    assert mode.status_code == 200, mode.text
    assert mode.json() == {
        "companyId": str(company),
        "mode": "credit_only",
        "lowBalanceThreshold": "2.0000",
        "balance": "6.0000",
        "currency": "USD",
    }

    usage = generated(company, draft="d-1", questions=20, at=AT)  # 0.2000
    await record(billing, usage)

    credits = await billing.billing_json(company, "/api/billing/credits")
    assert credits["balance"] == "5.8000"
    assert credits["mode"] == "credit_only"
    assert credits["lowBalanceThreshold"] == "2.0000"
    by_id = {g["grantId"]: g for g in credits["grants"]}
    assert by_id[granted["grantId"]]["remaining"] == "4.8000"  # priority 1 drawn first
    assert credits["nextCursor"] is None
    first_page = await billing.billing_json(company, "/api/billing/credits", limit=1)
    assert len(first_page["grants"]) == 1
    assert first_page["nextCursor"]
    rest = await billing.billing_json(
        company, "/api/billing/credits", limit=1, cursor=first_page["nextCursor"]
    )
    assert {g["grantId"] for g in first_page["grants"] + rest["grants"]} == set(by_id)

    entries = (await billing.billing_json(company, "/api/billing/credits/entries"))["entries"]
    usage_id = (await billing.usage(company))[0]["id"]
    assert [(e["kind"], e["amount"]) for e in entries] == [
        ("draw", "0.2000"),
        ("grant", "1.0000"),
        ("grant", "5.0000"),
    ]
    assert entries[0]["usageId"] == str(usage_id)
    assert entries[0]["grantId"] == granted["grantId"]
    page = await billing.billing_json(company, "/api/billing/credits/entries", limit=2)
    assert page["nextCursor"]
    last = await billing.billing_json(
        company, "/api/billing/credits/entries", limit=2, cursor=page["nextCursor"]
    )
    assert [e["entryId"] for e in page["entries"] + last["entries"]] == [
        e["entryId"] for e in entries
    ]
    assert last["nextCursor"] is None

    other = await billing.billing_json(uuid.uuid4(), "/api/billing/credits")
    assert other == {
        "balance": "0.0000",
        "mode": "none",
        "lowBalanceThreshold": None,
        "grants": [],
        "nextCursor": None,
        "currency": "USD",
    }


async def test_a_void_takes_what_remains_once_and_only_for_the_grants_company(
    billing: Stack, company: UUID
) -> None:
    granted = (await post_grant(billing, company, grant_body())).json()
    path = f"/api/billing/admin/companies/{company}/credits/{granted['grantId']}/void"
    voided = await billing.billing.post(path, headers={**OPERATOR, "Idempotency-Key": "v-1"})
    assert voided.status_code == 200, voided.text
    assert voided.json()["remaining"] == "0.0000"
    assert voided.json()["voidedAt"]
    again = await billing.billing.post(path, headers=OPERATOR)
    assert again.status_code == 200
    assert again.json() == voided.json()

    stranger = uuid.uuid4()
    elsewhere = f"/api/billing/admin/companies/{stranger}/credits/{granted['grantId']}/void"
    assert (await billing.billing.post(elsewhere, headers=OPERATOR)).status_code == 404
    unknown = f"/api/billing/admin/companies/{company}/credits/{uuid.uuid4()}/void"
    assert (await billing.billing.post(unknown, headers=OPERATOR)).status_code == 404

    credits = await billing.billing_json(company, "/api/billing/credits")
    assert credits["balance"] == "0.0000"
    entries = (await billing.billing_json(company, "/api/billing/credits/entries"))["entries"]
    assert [(e["kind"], e["amount"]) for e in entries] == [("void", "5.0000"), ("grant", "5.0000")]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "0.00001"}, "amount"),
        ({"amount": "-1.0000"}, "amount"),
        ({"amount": "1e30"}, "amount"),
        ({"priority": 0}, "priority"),
        ({"priority": 51}, "priority"),
        ({"priority": "5"}, "priority"),
        ({"kind": "free"}, "kind"),
        ({"expiresAt": "2025-12-31T00:00:00Z"}, "expiresAt"),
        ({"expiresAt": "2026-01-01T00:00:00Z"}, "expiresAt"),
        ({"effectiveAt": "2026-01-01T00:00:00"}, "effectiveAt"),
        ({"reason": "x" * 501}, "reason"),
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"extra": 1}, "extra"),
    ],
)
async def test_bad_grants_are_refused_naming_the_field_and_nothing_is_written(
    billing: Stack, company: UUID, fields: dict[str, Any], field: str
) -> None:
    response = await post_grant(billing, company, grant_body(**fields), **{"Idempotency-Key": "k"})
    assert response.status_code == 422, response.text
    assert field in {error["field"] for error in response.json()["errors"]}
    assert await written(billing) == NOTHING


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "prepaid"},
        {"mode": "credit_only", "lowBalanceThreshold": "-1"},
        {"mode": "credit_only", "lowBalanceThreshold": "1.00001"},
    ],
)
async def test_a_bad_credit_mode_is_refused_and_nothing_is_written(
    billing: Stack, company: UUID, body: dict[str, Any]
) -> None:
    response = await put_mode(billing, company, body)
    assert response.status_code == 422, response.text
    assert await written(billing) == NOTHING


async def test_a_company_token_on_an_admin_route_is_403_and_nothing_is_written(
    billing: Stack, company: UUID
) -> None:
    finance = bearer(company, roles=["billing:admin"])
    base = f"/api/billing/admin/companies/{company}"
    answers = [
        await billing.billing.post(f"{base}/credits", json=grant_body(), headers=finance),
        await billing.billing.post(f"{base}/credits/{uuid.uuid4()}/void", headers=finance),
        await billing.billing.put(f"{base}/credit-mode", json={"mode": "none"}, headers=finance),
    ]
    assert [answer.status_code for answer in answers] == [403, 403, 403]
    assert (await billing.billing.get("/api/billing/credits")).status_code == 401
    assert await written(billing) == NOTHING


async def test_a_malformed_cursor_is_a_422_naming_it(billing: Stack, company: UUID) -> None:
    for path in ("/api/billing/credits", "/api/billing/credits/entries"):
        response = await billing.billing.get(
            path, params={"cursor": "nope"}, headers=bearer(company)
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "cursor"


async def test_a_grant_that_expires_tomorrow_is_listed_with_its_window(
    billing: Stack, company: UUID
) -> None:
    expires = (AT + timedelta(days=1)).isoformat()
    response = await post_grant(billing, company, grant_body(expiresAt=expires, priority=50))
    assert response.status_code == 201, response.text
    assert datetime.fromisoformat(response.json()["expiresAt"]) == AT + timedelta(days=1)


async def test_a_forged_entries_cursor_is_a_422_not_a_500(billing: Stack, company: UUID) -> None:
    """A cursor that is not one billing sealed (a number past bigint, another company's
    list) is refused naming `cursor`, before anything in it is read."""
    raw = f"credit-entries|{company}|{2**70}".encode()
    forged = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    for path in ("/api/billing/credits/entries", "/api/billing/credits"):
        response = await billing.billing.get(
            path, params={"cursor": forged}, headers=bearer(company)
        )
        assert response.status_code == 422, (path, response.text)
        assert "cursor" in response.text


# An entry made in another month, as the ledger would hold it (entries are only appended).
EARLIER_ENTRY = """
INSERT INTO credit_entries (entry_id, company_id, kind, amount, grant_id, at)
VALUES (gen_random_uuid(), $1, 'grant', 2, gen_random_uuid(), $2)
RETURNING entry_id
"""


async def test_entries_of_a_range_are_only_those_made_in_it_paged_within_it(
    billing: Stack, company: UUID
) -> None:
    for amount in ("1", "2", "3"):
        assert (await post_grant(billing, company, grant_body(amount=amount))).status_code == 201
    now = datetime.now(UTC)
    this_month = datetime(now.year, now.month, 1, tzinfo=UTC)
    earlier = this_month - timedelta(days=3)
    [old] = await billing.fetch(billing.dbs.billing, EARLIER_ENTRY, company, earlier)
    month = {"from": this_month.isoformat(), "to": (now + timedelta(hours=1)).isoformat()}

    everything = await billing.billing_json(company, "/api/billing/credits/entries")
    assert len(everything["entries"]) == 4
    shown = await billing.billing_json(company, "/api/billing/credits/entries", **month)
    assert [e["amount"] for e in shown["entries"]] == ["3.0000", "2.0000", "1.0000"]
    assert str(old["entry_id"]) not in {e["entryId"] for e in shown["entries"]}
    before = await billing.billing_json(
        company, "/api/billing/credits/entries", to=this_month.isoformat()
    )
    assert [e["entryId"] for e in before["entries"]] == [str(old["entry_id"])]

    # Paged within the range: the last page ends at the range's first entry, not the ledger's.
    first = await billing.billing_json(company, "/api/billing/credits/entries", limit=2, **month)
    assert first["nextCursor"]
    rest = await billing.billing_json(
        company, "/api/billing/credits/entries", limit=2, cursor=first["nextCursor"], **month
    )
    assert [e["amount"] for e in first["entries"] + rest["entries"]] == [
        "3.0000",
        "2.0000",
        "1.0000",
    ]
    assert rest["nextCursor"] is None
    # A cursor is its range's: under another range it is refused, not read.
    other = await billing.billing.get(
        "/api/billing/credits/entries",
        params={"cursor": first["nextCursor"], "limit": 2},
        headers=bearer(company),
    )
    assert other.status_code == 422
    backwards = await billing.billing.get(
        "/api/billing/credits/entries",
        params={"from": month["to"], "to": month["from"]},
        headers=bearer(company),
    )
    assert backwards.status_code == 422
    assert backwards.json()["errors"][0]["field"] == "from"
