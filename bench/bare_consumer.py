"""The baseline consumer: bare aio-pika on uvloop, acking each message as it arrives.

`python -m bench.bare_consumer --queue Q --count N --prefetch P`: consumes until N
messages are acknowledged, then prints one JSON line with the wall-clock times of
its consumer's registration and of the last acknowledgement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aio_pika
import uvloop
from aio_pika.abc import AbstractIncomingMessage


async def consume(url: str, queue_name: str, count: int, prefetch: int) -> tuple[float, float]:
    done = asyncio.Event()
    acked = 0
    finished_at = 0.0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal acked, finished_at
        await message.ack()
        acked += 1
        if acked == count:
            finished_at = time.time()
            done.set()

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.declare_queue(queue_name, passive=True)
        await queue.consume(on_message)
        started_at = time.time()
        await done.wait()
    return started_at, finished_at


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_consumer")
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefetch", type=int, default=1000)
    args = parser.parse_args(argv)
    started_at, finished_at = uvloop.run(consume(args.url, args.queue, args.count, args.prefetch))
    print(json.dumps({"acked": args.count, "started_at": started_at, "finished_at": finished_at}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
