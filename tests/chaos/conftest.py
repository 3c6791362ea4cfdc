"""Fixtures of the fault tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.harness import Figures


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    seen = Figures(request.node.name)
    yield seen
    seen.emit()
