"""Follow a paged list's `nextCursor` to its end, as a client does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

MAX_PAGES = 100


async def every_page(
    read: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]], items: str
) -> list[list[Any]]:
    """The items of each page, first to last: `read(params)` answers one page, and is given
    `{"cursor": ...}` from the second page on. Fails on an empty page after the first (the
    page before it should have had a null `nextCursor`)."""
    pages: list[list[Any]] = []
    params: dict[str, Any] = {}
    while True:
        page = await read(params)
        pages.append(page[items])
        if len(pages) > 1:
            assert page[items], f"page {len(pages)} is empty: the one before was the last"
        if page["nextCursor"] is None:
            return pages
        assert len(pages) < MAX_PAGES, "nextCursor never ends"
        params = {"cursor": page["nextCursor"]}
