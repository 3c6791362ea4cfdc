import uuid
from datetime import UTC, datetime

import pytest

from services.servicekit.pagination import Cursor, next_cursor
from services.servicekit.problems import Problem


def test_a_cursor_round_trips() -> None:
    cursor = Cursor(datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC), uuid.uuid4())
    assert Cursor.decode(cursor.encode()) == cursor


NAIVE = Cursor(datetime(2026, 1, 1), uuid.UUID(int=7)).encode()  # noqa: DTZ001 - naive on purpose


@pytest.mark.parametrize(
    "value", ["", "garbage", "bm90fGE=", NAIVE], ids=["empty", "garbage", "short", "naive"]
)
def test_a_cursor_we_did_not_make_is_a_422(value: str) -> None:
    with pytest.raises(Problem) as caught:
        Cursor.decode(value)
    assert caught.value.status == 422


def test_next_cursor_only_when_the_page_is_full() -> None:
    rows = [(datetime.now(UTC), uuid.uuid4()) for _ in range(3)]
    assert next_cursor(rows, 4) is None
    assert Cursor.decode(next_cursor(rows, 3) or "") == Cursor(*rows[-1])
