"""Publish QuestionsGenerated events as the outbox relay does: `python -m bench.publisher`.

With `--calls`, each generation's billed `LlmCallFinished` is published beside it
(as the question service's outbox writes both in the generation's transaction).

Persistent, mandatory, with publisher confirms, to the real events exchange,
from a process of its own. Prints one JSON line: published, seconds, event ids file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import uvloop

from contracts.events import Event, QuestionsGenerated
from contracts.topology import Topology
from tests.support.events import call_of, generated

WINDOW = 500  # publishes awaiting their confirm at once


def tenants_of(rng: random.Random, companies: int) -> list[uuid.UUID]:
    """The companies the events are spread over: the first draws of the seeded generator."""
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(companies)]


def make_events(count: int, companies: int, seed: int) -> list[QuestionsGenerated]:
    rng = random.Random(seed)
    tenants = tenants_of(rng, companies)
    now = datetime.now(UTC)
    events = []
    for _ in range(count):
        draft = uuid.UUID(int=rng.getrandbits(128), version=4)
        # As the front end sends them: half name the draft as jobId, half as draftJobId.
        as_job_id = rng.random() < 0.5
        events.append(
            generated(
                rng.choice(tenants),
                job_id=draft if as_job_id else None,
                draft=None if as_job_id else str(draft),
                at=now,
                prompt_tokens=512,
                completion_tokens=734,
                event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            )
        )
    return events


def with_calls(events: list[QuestionsGenerated]) -> list[Event]:
    """Each generation followed by its billed call, as the outbox holds them."""
    return [message for event in events for message in (event, call_of(event))]


async def publish(
    url: str, topology: Topology, events: list[Event], duplicates: int, seed: int
) -> float:
    rng = random.Random(seed + 1)
    messages = [(event.to_json(), str(event.event_id), event.routing_key) for event in events]
    messages += [rng.choice(messages) for _ in range(duplicates)]
    rng.shuffle(messages)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.exchange_name)
        started = time.perf_counter()
        for start in range(0, len(messages), WINDOW):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            body,
                            content_type="application/json",
                            message_id=message_id,
                            type=routing_key,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=routing_key,
                        mandatory=True,
                    )
                    for body, message_id, routing_key in messages[start : start + WINDOW]
                )
            )
        return time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publisher")
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--duplicates", type=int, default=0)
    parser.add_argument("--companies", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ids", type=Path, help="write the event ids here")
    parser.add_argument("--calls", action="store_true", help="each generation's call beside it")
    args = parser.parse_args(argv)
    events = make_events(args.count, args.companies, args.seed)
    messages: list[Event] = with_calls(events) if args.calls else list(events)
    seconds = uvloop.run(
        publish(args.url, Topology(args.prefix), messages, args.duplicates, args.seed)
    )
    if args.ids is not None:
        args.ids.write_text("\n".join(str(event.event_id) for event in events))
    print(json.dumps({"published": len(messages) + args.duplicates, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
