"""The RabbitMQ broker of a service, and the topology every service declares at start.

`RABBITMQ_URL` may name several nodes of one cluster, comma-separated. Neither
aio-pika nor FastStream takes a list of hosts (aio-pika's robust connection
reconnects to its one URL), so `FailoverConnection` adds that to aio-pika's
`RobustConnection`: each connection attempt tries the nodes in turn, starting
after the one it last lost, and everything else (re-opening channels,
re-declaring what was declared on them, re-registering consumers) is the
robust connection's own recovery. FastStream builds its connection with
aio-pika's `connect_robust`, which takes the connection class to use.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aio_pika
import structlog
from aio_pika import RobustConnection
from aio_pika.abc import AbstractRobustConnection
from faststream.rabbit import Channel, RabbitBroker
from yarl import URL

from contracts.topology import Topology

log = structlog.get_logger(__name__)


# Behind a network that drops packets without a reset, only heartbeats tell a connection is
# dead. With RabbitMQ's default (60 s) a worker went on believing it consumed (and `/readyz`
# said so) for over three minutes after the broker had dropped its consumer.
HEARTBEAT_SECONDS = 10
# One node's connection handshake. A paused node accepts TCP and then says nothing; without
# a limit the attempt would wait on it forever instead of moving to the next node.
CONNECT_TIMEOUT_SECONDS = 5.0


def broker_urls(value: str) -> list[str]:
    """The URLs of a comma-separated `RABBITMQ_URL`; a clear error for anything malformed."""
    urls = [part.strip() for part in value.split(",") if part.strip()]
    if not urls:
        raise ValueError("RABBITMQ_URL names no broker")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError(f"not an amqp:// or amqps:// URL with a host: {parts.scheme}://...")
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    return urls


def with_heartbeat(url: str, seconds: int = HEARTBEAT_SECONDS) -> str:
    """`url` asking for `seconds` between heartbeats, unless it asks for its own."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "heartbeat" for key, _ in query):
        return url
    query.append(("heartbeat", str(seconds)))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def _node(url: URL) -> str:
    return f"{url.host}:{url.port}"


class FailoverConnection(RobustConnection):
    """aio-pika's robust connection over several nodes of one cluster.

    Options in the query string (heartbeat, ...) are read from the first URL and apply
    to every node; credentials and virtual host are each URL's own.
    """

    # The one step of `RobustConnection` that opens a transport (to `self.url`); each
    # attempt of its reconnection loop calls it. Checked here so that an aio-pika that
    # renamed it fails at import, not silently on the first lost node.
    _OPEN_TRANSPORT = "_RobustConnection__connect_transport"
    assert hasattr(RobustConnection, _OPEN_TRANSPORT), "aio-pika changed its robust connection"

    def __init__(
        self,
        url: URL,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        alternates: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(url, loop=loop, **kwargs)
        self.nodes: tuple[URL, ...] = (self.url, *(URL(other) for other in alternates))
        self._next = 0

    async def _RobustConnection__connect_transport(self) -> None:
        """Try every node once, starting after the last one connected (or lost)."""
        open_transport = getattr(RobustConnection, self._OPEN_TRANSPORT)
        failure: BaseException | None = None
        for step in range(len(self.nodes)):
            index = (self._next + step) % len(self.nodes)
            self.url = self.nodes[index]
            try:
                await open_transport(self)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("broker node unreachable", node=_node(self.url), error=repr(exc))
                failure = exc
                continue
            # When this node is lost, the next attempt starts with another one.
            self._next = (index + 1) % len(self.nodes)
            log.info("broker node connected", node=_node(self.url))
            return
        assert failure is not None
        raise failure


async def connect(url: str) -> AbstractRobustConnection:
    """A robust aio-pika connection on `url` (one node, or several), for one-shot tools."""
    first, *alternates = (with_heartbeat(node) for node in broker_urls(url))
    return await aio_pika.connect_robust(
        first,
        timeout=CONNECT_TIMEOUT_SECONDS,
        connection_class=functools.partial(FailoverConnection, alternates=alternates),
    )


def make_broker(
    url: str,
    *,
    app_id: str,
    graceful_timeout: float = 15.0,
    prefetch_count: int | None = None,
    middlewares: Sequence[Any] = (),
) -> RabbitBroker:
    """A FastStream broker on `url`: one node, or several of one cluster separated by commas."""
    first, *alternates = (with_heartbeat(node) for node in broker_urls(url))
    broker = RabbitBroker(
        first,
        app_id=app_id,
        graceful_timeout=graceful_timeout,
        reconnect_interval=1.0,
        timeout=CONNECT_TIMEOUT_SECONDS,
        # An unroutable publish is an error, never a silent drop.
        default_channel=Channel(prefetch_count=prefetch_count, on_return_raises=True),
        middlewares=middlewares,
        logger=logging.getLogger(f"{app_id}.broker"),
        log_level=logging.DEBUG,
    )
    # FastStream hands these to aio-pika's `connect_robust`, whose `connection_class`
    # chooses the connection; FastStream has no option of its own for it.
    broker._connection_kwargs["connection_class"] = functools.partial(
        FailoverConnection, alternates=alternates
    )
    return broker


async def declare_topology(broker: RabbitBroker, topology: Topology) -> None:
    """Declare exchange, billing queue, dead-lettering, the question service's queue of
    billing's events, and bindings. Idempotent."""
    exchange = await broker.declare_exchange(topology.exchange())
    dead_letters = await broker.declare_exchange(topology.dead_letter_exchange())
    dlq = await broker.declare_queue(topology.billing_dlq())
    await dlq.bind(dead_letters, routing_key="")
    queue = await broker.declare_queue(topology.billing_queue())
    for routing_key in topology.billing_bindings():
        await queue.bind(exchange, routing_key=routing_key)
    # Billing's events wait here for the question service, even before it first starts.
    question_billing = await broker.declare_queue(topology.question_billing_queue())
    for routing_key in topology.question_billing_bindings():
        await question_billing.bind(exchange, routing_key=routing_key)


async def connect_with_retry(
    broker: RabbitBroker,
    topology: Topology,
    *,
    then: Callable[[], Awaitable[None]] | None = None,
    max_delay: float = 5.0,
) -> None:
    """Connect, declare the topology and run `then` (start consuming), retrying until it works.

    Services start and answer HTTP while RabbitMQ is down; this runs beside them. Once
    connected, the connection itself moves between nodes and restores what was declared.
    """
    delay = 0.2
    while True:
        try:
            await broker.connect()
            await declare_topology(broker, topology)
            if then is not None:
                await then()
        except Exception as exc:
            log.warning("broker unreachable, retrying", error=str(exc) or type(exc).__name__)
            await broker.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
        else:
            log.info("broker connected", exchange=topology.exchange_name)
            return
