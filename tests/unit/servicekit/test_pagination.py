import base64
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import pytest

from services.servicekit.db import Connection
from services.servicekit.pagination import (
    BIGINT_MAX,
    Cursor,
    CursorSeal,
    Page,
    bigint_key,
    decimal_key,
    fetch_page,
    instant_key,
    page_of,
    rows_for,
)
from services.servicekit.problems import Problem


def test_a_cursor_round_trips() -> None:
    cursor = Cursor(datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC), uuid.uuid4())
    assert Cursor.decode(cursor.encode()) == cursor


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


NAIVE = Cursor(datetime(2026, 1, 1), uuid.UUID(int=7)).encode()  # noqa: DTZ001 - naive on purpose
# Valid RFC 3339, outside the calendar once in UTC (years 0 and 10000).
BEFORE_TIME = _b64(f"0001-01-01T00:00:00+01:00|{uuid.UUID(int=7)}")
AFTER_TIME = _b64(f"9999-12-31T23:30:00-01:00|{uuid.UUID(int=7)}")


def refused(call: Any, *args: Any) -> bool:
    with pytest.raises(Problem) as caught:
        call(*args)
    assert caught.value.status == 422
    assert [error["field"] for error in caught.value.extra["errors"]] == ["cursor"]
    return True


@pytest.mark.parametrize(
    "value",
    ["", "garbage", "bm90fGE=", NAIVE, BEFORE_TIME, AFTER_TIME],
    ids=["empty", "garbage", "short", "naive", "year-0", "year-10000"],
)
def test_a_cursor_we_did_not_make_is_a_422_naming_cursor(value: str) -> None:
    assert refused(Cursor.decode, value)


SEAL = CursorSeal.from_secret("a secret of the service")
SCOPE = {"company": uuid.UUID(int=1), "from": None, "to": "2026-01-01T00:00:00+00:00"}


def test_a_sealed_cursor_opens_to_its_key_for_the_same_list_only() -> None:
    cursor = SEAL.seal("summary.jobs", SCOPE, ["0.3000", "abc"])
    assert SEAL.open(cursor, "summary.jobs", SCOPE, 2) == ["0.3000", "abc"]
    assert refused(SEAL.open, cursor, "drafts", SCOPE, 2)
    assert refused(SEAL.open, cursor, "summary.jobs", {**SCOPE, "company": uuid.UUID(int=2)}, 2)
    assert refused(SEAL.open, cursor, "summary.jobs", {**SCOPE, "to": None}, 2)
    assert refused(SEAL.open, cursor, "summary.jobs", SCOPE, 3)
    other_key = CursorSeal.from_secret("another service's secret")
    assert refused(other_key.open, cursor, "summary.jobs", SCOPE, 2)


def test_a_sealed_cursor_changed_in_any_way_is_refused() -> None:
    cursor = SEAL.seal("statement.lines", SCOPE, ["0.3000", str(uuid.UUID(int=3))])
    body, mac = cursor.split(".")
    forged_body = _b64(json.dumps(["1E+300000", str(uuid.UUID(int=3))]))
    for forged in (
        f"{forged_body}.{mac}",
        f"{body}.{mac[:-2]}AA",
        f"{body}.",
        body,
        f"{cursor}.{mac}",
        cursor + "x" * 500,
    ):
        assert refused(SEAL.open, forged, "statement.lines", SCOPE, 2)


def test_what_a_key_holds_is_parsed_strictly() -> None:
    assert decimal_key("0.3000") == Decimal("0.3000")
    assert bigint_key(str(BIGINT_MAX)) == BIGINT_MAX
    assert instant_key("2026-01-31T23:00:00-01:00") == datetime(2026, 2, 1, tzinfo=UTC)
    for bad in ("1E+300000", "NaN", "-Infinity", "9" * 41, "abc"):
        assert refused(decimal_key, bad)
    for bad in (str(BIGINT_MAX + 1), "0", "-1", "1e3", "١٢", "99999999999999999999999"):
        assert refused(bigint_key, bad)
    for bad in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00", "2026-01-01T00:00:00"):
        assert refused(instant_key, bad)


def test_a_page_is_read_with_one_row_more_than_it_shows() -> None:
    assert rows_for(3) == 4


@pytest.mark.parametrize(
    ("fetched", "items", "more"),
    [
        ([], [], False),
        ([1, 2], [1, 2], False),
        ([1, 2, 3], [1, 2, 3], False),  # exactly full, and the last page
        ([1, 2, 3, 4], [1, 2, 3], True),  # the extra row: another page follows
    ],
    ids=["empty", "short", "exactly-full-last", "more"],
)
def test_the_extra_row_only_says_another_page_follows(
    fetched: list[int], items: list[int], more: bool
) -> None:
    page = page_of(fetched, 3)
    assert page == Page(items, more)
    assert page.cursor(str) == (str(items[-1]) if more else None)


def test_a_page_keeps_its_more_when_its_items_are_converted() -> None:
    assert Page([1, 2], True).map(str) == Page(["1", "2"], True)


class FakeConnection:
    def __init__(self, rows: list[int]) -> None:
        self.rows = rows
        self.calls: list[tuple[Any, ...]] = []

    async def fetch(self, query: str, *args: Any) -> list[int]:
        self.calls.append((query, *args))
        return self.rows[: args[-1]]


async def test_fetch_page_asks_for_one_row_more_as_the_last_parameter() -> None:
    conn = FakeConnection([1, 2, 3, 4, 5])
    page: Page[Any] = await fetch_page(cast(Connection, conn), "SELECT", "a", None, limit=2)
    assert conn.calls == [("SELECT", "a", None, 3)]
    assert page == Page([1, 2], True)
    last: Page[Any] = await fetch_page(cast(Connection, FakeConnection([1, 2])), "SELECT", limit=2)
    assert last == Page([1, 2], False)
