"""Fixtures of the fault tests: figures, a billing process of the test's own, TCP proxies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from contracts.topology import Topology
from tests.chaos.harness import Figures, StartBilling
from tests.support.databases import ServiceDatabases
from tests.support.env import ADMIN_DSN, RABBITMQ_URL
from tests.support.processes import ServiceProcess, billing_process
from tests.support.proxy import TcpProxy, tcp_proxy


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    seen = Figures(request.node.name)
    yield seen
    seen.emit()


@pytest.fixture
def start_billing(dbs: ServiceDatabases, topology: Topology, tmp_path: Path) -> StartBilling:
    """`python -m services.billing` on the test's database and topology (or through a proxy)."""

    def start(
        *,
        database_url: str | None = None,
        rabbitmq_url: str = RABBITMQ_URL,
        extra_env: Mapping[str, str] | None = None,
        wait_ready: bool = True,
    ) -> AbstractAsyncContextManager[ServiceProcess]:
        return billing_process(
            database_url=database_url or dbs.billing,
            prefix=topology.prefix,
            log_dir=tmp_path,
            rabbitmq_url=rabbitmq_url,
            extra_env=extra_env,
            wait_ready=wait_ready,
        )

    return start


@pytest.fixture
async def broker_proxy() -> AsyncIterator[TcpProxy]:
    """A proxy to RabbitMQ that the test can cut, freeze and restore."""
    async with tcp_proxy(RABBITMQ_URL) as proxy:
        yield proxy


@pytest.fixture
async def database_proxy() -> AsyncIterator[TcpProxy]:
    """A proxy to PostgreSQL that the test can cut and restore."""
    async with tcp_proxy(ADMIN_DSN) as proxy:
        yield proxy
