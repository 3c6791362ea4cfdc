import uuid
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from services.servicekit.db import Connection
from services.servicekit.pagination import Cursor, Page, fetch_page, page_of, rows_for
from services.servicekit.problems import Problem


def test_a_cursor_round_trips() -> None:
    cursor = Cursor(datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC), uuid.uuid4())
    assert Cursor.decode(cursor.encode()) == cursor


NAIVE = Cursor(datetime(2026, 1, 1), uuid.UUID(int=7)).encode()  # noqa: DTZ001 - naive on purpose


@pytest.mark.parametrize(
    "value", ["", "garbage", "bm90fGE=", NAIVE], ids=["empty", "garbage", "short", "naive"]
)
def test_a_cursor_we_did_not_make_is_a_422_naming_cursor(value: str) -> None:
    with pytest.raises(Problem) as caught:
        Cursor.decode(value)
    assert caught.value.status == 422
    assert caught.value.extra["errors"][0]["field"] == "cursor"


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
