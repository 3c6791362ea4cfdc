"""Fixtures shared by every test layer. Unit tests use none of the I/O ones."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from uuid import UUID

import pytest

from contracts.topology import Topology
from tests.support.broker import delete_topology
from tests.support.databases import (
    ServiceDatabases,
    clone_databases,
    create_templates,
    drop_databases,
    drop_run_databases,
)
from tests.support.env import RUN_ID
from tests.support.stack import Stack, start_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `pytest -n`, the fault tests run one after another on one worker.

    They kill processes, cut connections and time recoveries: beside each other they
    would steal each other's CPU and ports. Everything else spreads over the workers.
    """
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            item.add_marker(pytest.mark.xdist_group("chaos"))


@pytest.fixture(scope="session")
def database_templates() -> Iterator[None]:
    asyncio.run(create_templates())
    yield
    asyncio.run(drop_run_databases())


@pytest.fixture
async def dbs(database_templates: None) -> AsyncIterator[ServiceDatabases]:
    databases, names = await clone_databases()
    yield databases
    await drop_databases(names)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A topology prefix of this test alone; its exchanges and queues are deleted after."""
    name = f"{RUN_ID}.{uuid.uuid4().hex[:8]}."
    yield name
    await delete_topology(Topology(name))


@pytest.fixture
def topology(prefix: str) -> Topology:
    return Topology(prefix)


@pytest.fixture
async def stack(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Stack]:
    async with start_stack(dbs, prefix) as running:
        yield running


@pytest.fixture
def company() -> UUID:
    return uuid.uuid4()
