"""Acknowledge in bulk: one `basic.ack(multiple=True)` for what was settled together.

A message is settled once what it caused is committed (or its dead letter
confirmed); only then may it be acknowledged. Delivery tags grow on a channel,
so once every message up to tag T is settled, one multiple-ack for T covers
them all: a committed batch of 500 costs one frame instead of 500. A message
not yet settled holds back every later tag of its channel. A channel that
closed gives its unacknowledged messages back to the queue; they are delivered
again and billing absorbs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq

import structlog
from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import AbstractChannel

log = structlog.get_logger(__name__)


class SettledTags:
    """Which tags of one channel may be acknowledged: the settled ones below the first unsettled."""

    def __init__(self) -> None:
        self._received: list[int] = []  # a heap: the lowest unacknowledged tag first
        self._settled: set[int] = set()

    def received(self, tag: int) -> None:
        heapq.heappush(self._received, tag)

    def settle(self, tag: int) -> None:
        self._settled.add(tag)

    def acknowledgeable(self) -> int | None:
        """The highest tag that a multiple-ack may name now, and forget what it covers."""
        highest = None
        while self._received and self._received[0] in self._settled:
            highest = heapq.heappop(self._received)
            self._settled.discard(highest)
        return highest

    def __len__(self) -> int:
        return len(self._received)


class Acknowledger:
    def __init__(self) -> None:
        self._channels: dict[AbstractChannel, SettledTags] = {}
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    def received(self, message: AbstractIncomingMessage) -> None:
        """Call on delivery, before the first `await`."""
        assert message.delivery_tag is not None
        self._channels.setdefault(message.channel, SettledTags()).received(message.delivery_tag)

    def settled(self, message: AbstractIncomingMessage) -> None:
        """What the message caused is committed: acknowledge it (with others settled now)."""
        assert message.delivery_tag is not None
        tags = self._channels.get(message.channel)
        if tags is None:
            return  # its channel closed: the broker has taken it back already
        tags.settle(message.delivery_tag)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # After every handler resumed by the same commit has settled its message.
            asyncio.get_running_loop().call_soon(self._flush)

    def returned(self, message: AbstractIncomingMessage) -> None:
        """The message was nacked back to the queue: it no longer holds later tags back.

        A multiple-ack that covers its tag afterwards leaves it alone: the broker only
        acknowledges tags still outstanding, and the nack was sent first.
        """
        self.settled(message)

    def _flush(self) -> None:
        self._flush_scheduled = False
        for channel, tags in list(self._channels.items()):
            if channel.is_closed:
                del self._channels[channel]
                continue
            tag = tags.acknowledgeable()
            if tag is not None:
                task = asyncio.create_task(self._ack(channel, tag))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _ack(self, channel: AbstractChannel, tag: int) -> None:
        try:
            await channel.basic_ack(delivery_tag=tag, multiple=True)
        except Exception as exc:
            # The channel went away: its messages return to the queue and are absorbed.
            log.info("acknowledgement not delivered; the broker redelivers", error=repr(exc))

    async def drain(self) -> None:
        """Send what is settled and wait until it is written (before closing the channel)."""
        self._flush()
        if self._sending:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._sending)
